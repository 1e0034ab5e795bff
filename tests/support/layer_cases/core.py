"""Core layers: Dense, Activation, Dropout, Flatten, Normalization."""

from __future__ import annotations

from typing import Any

CASES: dict[str, tuple[list[tuple[str, dict[str, Any]]], list[Any]]] = {
    "Dense": ([("Dense", {"units": 3, "activation": "tanh"})], [None, 4]),
    "Dense_3d": ([("Dense", {"units": 2, "use_bias": False})], [None, 3, 4]),
    "Activation": ([("Activation", {"activation": "softmax"})], [None, 5]),
    "Dropout": ([("Dropout", {"rate": 0.4})], [None, 5]),
    "Flatten": ([("Flatten", {})], [None, 2, 3]),
    "Normalization": ([("Normalization", {"axis": -1, "mean": [1.0, 2.0], "variance": [4.0, 0.0]})],
                      [None, 2]),
    "Normalization_unadapted": ([("Normalization", {})], [None, 3]),
}  # fmt: skip
