"""Pooling layers: Max/AveragePooling1D/2D/3D (valid/same, strides, channels_first) and the global
poolings (keepdims). `*_same_asymmetric` cases pin Keras's torch-backend behaviour: an asymmetric
"same" window is padded by replicating the edge, so AveragePooling averages the repeated edge
value into the border windows (the TensorFlow backend would exclude the padding instead)."""

from __future__ import annotations

from typing import Any

CASES: dict[str, tuple[list[tuple[str, dict[str, Any]]], list[Any]]] = {
    "MaxPooling1D": ([("MaxPooling1D", {})], [None, 9, 3]),
    "MaxPooling1D_same_strided": ([("MaxPooling1D", {"pool_size": 3, "strides": 2,
                                                      "padding": "same"})], [None, 8, 2]),
    "MaxPooling2D": ([("MaxPooling2D", {})], [None, 7, 6, 3]),
    "MaxPooling2D_same_asymmetric": ([("MaxPooling2D", {"pool_size": 2, "padding": "same"})],
                                     [None, 5, 7, 2]),
    "MaxPooling2D_same_symmetric": ([("MaxPooling2D", {"pool_size": 3, "strides": 1,
                                                        "padding": "same"})], [None, 5, 4, 2]),
    "MaxPooling2D_channels_first": ([("MaxPooling2D", {"pool_size": [2, 3], "strides": [1, 2],
                                                        "data_format": "channels_first"})],
                                    [None, 2, 6, 7]),
    "MaxPooling3D": ([("MaxPooling3D", {"padding": "same"})], [None, 3, 4, 5, 2]),
    "AveragePooling1D": ([("AveragePooling1D", {"pool_size": 3})], [None, 10, 2]),
    "AveragePooling1D_same_asymmetric": ([("AveragePooling1D", {"pool_size": 4, "strides": 1,
                                                                 "padding": "same"})],
                                         [None, 7, 2]),
    "AveragePooling1D_channels_first": ([("AveragePooling1D", {"pool_size": 2, "strides": 1,
                                                                "data_format": "channels_first"})],
                                        [None, 3, 6]),
    "AveragePooling2D": ([("AveragePooling2D", {"pool_size": [2, 3]})], [None, 6, 7, 2]),
    "AveragePooling2D_same_asymmetric": ([("AveragePooling2D", {"pool_size": 3, "strides": 2,
                                                                 "padding": "same"})],
                                         [None, 6, 5, 3]),
    "AveragePooling2D_same_symmetric": ([("AveragePooling2D", {"pool_size": 3, "strides": 1,
                                                                "padding": "same"})],
                                        [None, 4, 5, 2]),
    "AveragePooling2D_channels_first_same": ([("AveragePooling2D", {
        "pool_size": 3, "strides": 2, "padding": "same", "data_format": "channels_first"})],
        [None, 2, 6, 5]),
    "AveragePooling3D": ([("AveragePooling3D", {"pool_size": 2, "strides": 1})],
                         [None, 3, 3, 4, 2]),
    "GlobalAveragePooling1D": ([("GlobalAveragePooling1D", {})], [None, 7, 3]),
    "GlobalAveragePooling1D_keepdims_cf": ([("GlobalAveragePooling1D", {
        "keepdims": True, "data_format": "channels_first"})], [None, 3, 7]),
    "GlobalAveragePooling2D": ([("GlobalAveragePooling2D", {})], [None, 5, 4, 3]),
    "GlobalAveragePooling2D_keepdims": ([("GlobalAveragePooling2D", {"keepdims": True})],
                                        [None, 5, 4, 3]),
    "GlobalAveragePooling3D": ([("GlobalAveragePooling3D", {"data_format": "channels_first"})],
                               [None, 2, 3, 4, 3]),
    "GlobalMaxPooling1D": ([("GlobalMaxPooling1D", {"keepdims": True})], [None, 7, 3]),
    "GlobalMaxPooling2D": ([("GlobalMaxPooling2D", {})], [None, 5, 4, 3]),
    "GlobalMaxPooling2D_channels_first": ([("GlobalMaxPooling2D", {
        "data_format": "channels_first", "keepdims": True})], [None, 3, 5, 4]),
    "GlobalMaxPooling3D": ([("GlobalMaxPooling3D", {})], [None, 2, 3, 4, 3]),
    "Conv2D_pool_flatten": ([("Conv2D", {"filters": 3, "kernel_size": 3, "padding": "same",
                                         "activation": "relu"}),
                             ("MaxPooling2D", {"padding": "same"}), ("Flatten", {}),
                             ("Dense", {"units": 2})], [None, 7, 6, 2]),
}  # fmt: skip
