"""Rescaling and the training-only noise layers (identity in inference, as compared here)."""

from __future__ import annotations

from typing import Any

CASES: dict[str, tuple[list[tuple[str, dict[str, Any]]], list[Any]]] = {
    "Rescaling": ([("Rescaling", {"scale": 0.00392156862745098, "offset": -0.5})], [None, 6]),
    "Rescaling_scale_only": ([("Rescaling", {"scale": 3.7, "offset": 0.0})], [None, 2, 3]),
    "GaussianNoise": ([("GaussianNoise", {"stddev": 0.3})], [None, 5]),
    "GaussianDropout": ([("GaussianDropout", {"rate": 0.4, "seed": 3})], [None, 5]),
    "SpatialDropout1D": ([("SpatialDropout1D", {"rate": 0.5})], [None, 4, 3]),
    "SpatialDropout2D": ([("SpatialDropout2D", {"rate": 0.2, "data_format": "channels_first"})],
                         [None, 2, 3, 3]),
}  # fmt: skip
