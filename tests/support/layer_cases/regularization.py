"""ActivityRegularization, and every layer with regularizer and constraint options set (wrapped
layers and wrappers included): the options leave the forward pass alone, and Keras's own
to_json() of each must parse here."""

from __future__ import annotations

from typing import Any

L2 = {"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.03},
      "registered_name": None}  # fmt: skip
MAXNORM = {"class_name": "MaxNorm", "config": {"max_value": 1.5, "axis": [0, 1]}}


def _wrapped(class_name: str, **config: Any) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": class_name, "config": config}


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
    "LSTM": ([("LSTM", {"units": 3, "kernel_regularizer": "l2", "recurrent_regularizer": L2,
                        "bias_regularizer": "l1", "activity_regularizer": "l1",
                        "kernel_constraint": "max_norm", "recurrent_constraint": "unit_norm",
                        "bias_constraint": "non_neg"})], [None, 4, 3]),
    "Bidirectional": ([("Bidirectional", {
        "activity_regularizer": "l2",
        "layer": _wrapped("GRU", units=2, return_sequences=True, recurrent_regularizer="l1",
                          recurrent_constraint=MAXNORM)})], [None, 4, 3]),
    "TimeDistributed": ([("TimeDistributed", {
        "activity_regularizer": "l1",
        "layer": _wrapped("Dense", units=2, kernel_regularizer="l2",
                          activity_regularizer="l2")})], [None, 4, 3]),
    "Conv2DTranspose": ([("Conv2DTranspose", {"filters": 2, "kernel_size": 2, "strides": 2,
                                              "kernel_regularizer": L2,
                                              "bias_regularizer": "l1",
                                              "activity_regularizer": "l2",
                                              "kernel_constraint": MAXNORM,
                                              "bias_constraint": "non_neg"})], [None, 3, 3, 2]),
    "DepthwiseConv2D": ([("DepthwiseConv2D", {"kernel_size": 2, "depth_multiplier": 2,
                                              "depthwise_regularizer": "l1",
                                              "depthwise_constraint": MAXNORM,
                                              "bias_regularizer": L2,
                                              "activity_regularizer": "l1"})], [None, 4, 4, 2]),
    "SeparableConv1D": ([("SeparableConv1D", {"filters": 3, "kernel_size": 2,
                                              "depthwise_regularizer": L2,
                                              "pointwise_regularizer": "l1",
                                              "bias_regularizer": "l2",
                                              "depthwise_constraint": "unit_norm",
                                              "pointwise_constraint": "max_norm",
                                              "bias_constraint": "non_neg"})], [None, 5, 2]),
    "EinsumDense": ([("EinsumDense", {"equation": "abc,cd->abd", "output_shape": [None, 3],
                                      "bias_axes": "d", "kernel_regularizer": "l1l2",
                                      "bias_regularizer": L2, "activity_regularizer": "l2",
                                      "kernel_constraint": MAXNORM,
                                      "bias_constraint": "unit_norm"})], [None, 4, 2]),
}  # fmt: skip
