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
    "SpatialDropout3D": ([("SpatialDropout3D", {"rate": 0.3, "seed": 2})], [None, 2, 3, 2, 4]),
    "SpatialDropout3D_channels_first": (
        [("SpatialDropout3D", {"rate": 0.1, "data_format": "channels_first"})], [None, 3, 2, 2, 2]),
    "AlphaDropout": ([("AlphaDropout", {"rate": 0.2, "seed": 5})], [None, 5]),
    "AlphaDropout_noise_shape": ([("AlphaDropout", {"rate": 0.4, "noise_shape": [None, 1, 3]})],
                                 [None, 4, 3]),
}  # fmt: skip
