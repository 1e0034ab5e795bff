"""Normalization layers: BatchNormalization, LayerNormalization, GroupNormalization,
UnitNormalization, RMSNormalization."""

from __future__ import annotations

from typing import Any

_STATS = {
    "moving_mean_initializer": {"class_name": "RandomNormal", "config": {"stddev": 0.5}},
    "moving_variance_initializer": {
        "class_name": "RandomUniform",
        "config": {"minval": 0.5, "maxval": 2.0},
    },
    "gamma_initializer": {"class_name": "RandomNormal", "config": {"mean": 1.0}},
    "beta_initializer": "random_normal",
}

_R = {"beta_initializer": "random_normal", "gamma_initializer": "random_normal"}

CASES: dict[str, tuple[list[tuple[str, dict[str, Any]]], list[Any]]] = {
    "BatchNormalization": ([("BatchNormalization", _STATS)], [None, 4]),
    "BatchNormalization_axis1": ([("BatchNormalization", {"axis": 1, "epsilon": 0.01, **_STATS})],
                                 [None, 3, 2, 2]),
    "BatchNormalization_plain": ([("BatchNormalization", {"center": False, "scale": False,
                                                          **_STATS})], [None, 5, 3]),
    "BatchNormalization_frozen": ([("BatchNormalization", {"trainable": False, **_STATS})],
                                  [None, 3]),
    "LayerNormalization": ([("LayerNormalization", _R)],
                           [None, 6]),
    "LayerNormalization_two_axes": ([("LayerNormalization", {"axis": [-2, -1], **_R})],
                                    [None, 2, 3, 4]),
    "LayerNormalization_gapped": ([("LayerNormalization", {"axis": [1, 3], "epsilon": 0.1, **_R})],
                                  [None, 2, 3, 4]),
    "LayerNormalization_plain": ([("LayerNormalization", {"center": False, "scale": False})],
                                 [None, 3, 5]),
    "GroupNormalization": ([("GroupNormalization", {"groups": 2, **_R})],
                           [None, 3, 3, 4]),
    "GroupNormalization_axis1": ([("GroupNormalization", {"groups": 3, "axis": 1,
                                                          "center": False})], [None, 6, 5]),
    "GroupNormalization_instance": ([("GroupNormalization", {"groups": -1})], [None, 4, 3]),
    "UnitNormalization": ([("UnitNormalization", {})], [None, 5]),
    "UnitNormalization_axes": ([("UnitNormalization", {"axis": [1, 2]})], [None, 3, 4, 2]),
    "RMSNormalization": ([("RMSNormalization", {"epsilon": 0.01})], [None, 3, 5]),
    "RMSNormalization_two_axes": ([("RMSNormalization", {"axis": [-2, -1]})], [None, 2, 3, 4]),
}  # fmt: skip
