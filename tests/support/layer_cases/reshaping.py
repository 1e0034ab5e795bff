"""Reshaping layers: Reshape, Permute, RepeatVector, UpSampling1D/2D, ZeroPadding1D/2D,
Cropping1D/2D (channels_first where Keras has it)."""

from __future__ import annotations

from typing import Any

CASES: dict[str, tuple[list[tuple[str, dict[str, Any]]], list[Any]]] = {
    "Reshape": ([("Reshape", {"target_shape": [3, 4]})], [None, 12]),
    "Reshape_inferred": ([("Reshape", {"target_shape": [-1, 2]}), ("Dense", {"units": 3})],
                         [None, 3, 4]),
    "Permute": ([("Permute", {"dims": [2, 1]}), ("Dense", {"units": 2})], [None, 3, 5]),
    "Permute_3d": ([("Permute", {"dims": [3, 1, 2]})], [None, 2, 3, 4]),
    "RepeatVector": ([("RepeatVector", {"n": 3})], [None, 4]),
    "UpSampling1D": ([("UpSampling1D", {"size": 3})], [None, 4, 2]),
    "UpSampling2D": ([("UpSampling2D", {"size": [2, 3]})], [None, 3, 4, 2]),
    "UpSampling2D_channels_first": ([("UpSampling2D", {"data_format": "channels_first"})],
                                    [None, 2, 3, 4]),
    "UpSampling2D_bilinear": ([("UpSampling2D", {"size": [2, 3], "interpolation": "bilinear"})],
                              [None, 3, 4, 2]),
    "UpSampling2D_bicubic_cf": ([("UpSampling2D", {"interpolation": "bicubic",
                                                   "data_format": "channels_first"})],
                                [None, 2, 3, 4]),
    "ZeroPadding1D": ([("ZeroPadding1D", {"padding": [1, 2]})], [None, 4, 3]),
    "ZeroPadding1D_channels_first": ([("ZeroPadding1D", {"data_format": "channels_first"})],
                                     [None, 3, 4]),
    "ZeroPadding2D": ([("ZeroPadding2D", {"padding": [[1, 0], [2, 3]]})], [None, 3, 4, 2]),
    "ZeroPadding2D_channels_first": ([("ZeroPadding2D", {"padding": [1, 2],
                                                         "data_format": "channels_first"})],
                                     [None, 2, 3, 4]),
    "Cropping1D": ([("Cropping1D", {"cropping": [2, 0]})], [None, 6, 3]),
    "Cropping1D_default": ([("Cropping1D", {})], [None, 6, 3]),
    "Cropping2D": ([("Cropping2D", {"cropping": [[1, 2], [0, 1]]})], [None, 6, 5, 2]),
    "Cropping2D_channels_first": ([("Cropping2D", {"cropping": 1,
                                                   "data_format": "channels_first"})],
                                  [None, 2, 5, 4]),
}  # fmt: skip
