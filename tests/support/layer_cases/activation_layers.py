"""Activation layers: ReLU, LeakyReLU, PReLU, ELU, Softmax."""

from __future__ import annotations

from typing import Any

_NORMAL = {"class_name": "RandomNormal", "config": {"stddev": 0.5}}

CASES: dict[str, tuple[list[tuple[str, dict[str, Any]]], list[Any]]] = {
    "ReLU": ([("ReLU", {})], [None, 8]),
    "ReLU_max": ([("ReLU", {"max_value": 0.7})], [None, 8]),
    "ReLU_six": ([("ReLU", {"max_value": 6.0})], [None, 8]),
    "ReLU_slope": ([("ReLU", {"negative_slope": 0.2})], [None, 8]),
    "ReLU_threshold": ([("ReLU", {"threshold": 0.3})], [None, 8]),
    "ReLU_all": ([("ReLU", {"max_value": 1.1, "negative_slope": 0.1, "threshold": 0.4})],
                 [None, 3, 8]),
    "ReLU_slope_max": ([("ReLU", {"max_value": 0.5, "negative_slope": 0.25})], [None, 8]),
    "LeakyReLU": ([("LeakyReLU", {})], [None, 8]),
    "LeakyReLU_slope": ([("LeakyReLU", {"negative_slope": 0.05})], [None, 2, 4]),
    "PReLU": ([("PReLU", {"alpha_initializer": _NORMAL})], [None, 6]),
    "PReLU_shared": ([("PReLU", {"alpha_initializer": _NORMAL, "shared_axes": [1, 2]})],
                     [None, 3, 4, 2]),
    "PReLU_shared_int": ([("PReLU", {"alpha_initializer": _NORMAL, "shared_axes": 1})],
                         [None, 4, 3]),
    "ELU": ([("ELU", {})], [None, 8]),
    "ELU_alpha": ([("ELU", {"alpha": 0.4})], [None, 8]),
    "Softmax": ([("Softmax", {})], [None, 5]),
    "Softmax_axis1": ([("Softmax", {"axis": 1})], [None, 3, 4]),
    "Softmax_two_axes": ([("Softmax", {"axis": [1, 2]})], [None, 3, 4]),
}  # fmt: skip
