"""ActivityRegularization, and every layer with regularizer and constraint options set: the
options leave the forward pass alone, and Keras's own to_json() of each must parse here."""

from __future__ import annotations

from typing import Any

L2 = {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.03},
      "registered_name": None}  # fmt: skip
MAXNORM = {"class_name": "MaxNorm", "config": {"max_value": 1.5, "axis": [0, 1]}}

CASES: dict[str, tuple[list[tuple[str, dict[str, Any]]], list[Any]]] = {
    "ActivityRegularization": ([("ActivityRegularization", {"l1": 0.01, "l2": 0.2})], [None, 4]),
    "ActivityRegularization_default": ([("ActivityRegularization", {})], [None, 2, 3]),
    "Dense": ([("Dense", {"units": 3, "kernel_regularizer": "l1", "bias_regularizer": L2,
                          "activity_regularizer": "l1l2", "kernel_constraint": "unit_norm",
                          "bias_constraint": "non_neg"})], [None, 4]),
    "Conv2D": ([("Conv2D", {"filters": 2, "kernel_size": 2, "kernel_regularizer": L2,
                            "kernel_constraint": MAXNORM, "bias_constraint": "max_norm",
                            "activity_regularizer": "l2"})], [None, 4, 4, 3]),
    "Embedding": ([("Embedding", {"input_dim": 6, "output_dim": 3, "embeddings_regularizer": "l2",
                                  "embeddings_constraint": "min_max_norm",
                                  "activity_regularizer": "l1"})], [None, 5], "int:6"),
    "BatchNormalization": ([("BatchNormalization", {"beta_regularizer": "l1",
                                                    "gamma_regularizer": L2,
                                                    "beta_constraint": "non_neg",
                                                    "gamma_constraint": "unit_norm"})], [None, 4]),
    "LayerNormalization": ([("LayerNormalization", {"gamma_regularizer": "l2",
                                                    "beta_constraint": "max_norm"})], [None, 4]),
    "GroupNormalization": ([("GroupNormalization", {"groups": 2, "beta_regularizer": L2,
                                                    "gamma_constraint": "non_neg"})],
                           [None, 3, 4]),
    "PReLU": ([("PReLU", {"alpha_regularizer": "l1", "alpha_constraint": "non_neg"})], [None, 4]),
    "Flatten": ([("Flatten", {"activity_regularizer": L2})], [None, 2, 3]),
}  # fmt: skip
