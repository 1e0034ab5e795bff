"""Convolution layers: Conv1D, Conv2D, Conv3D (valid/same/causal padding, strides, dilation,
groups, channels_first). Outputs match Keras to the default tolerance because the engine runs the
same torch ops in the same order as Keras's torch backend."""

from __future__ import annotations

from typing import Any

CASES: dict[str, tuple[list[tuple[str, dict[str, Any]]], list[Any]]] = {
    "Conv1D": ([("Conv1D", {"filters": 4, "kernel_size": 3, "activation": "relu"})], [None, 9, 3]),
    "Conv1D_same_strided": ([("Conv1D", {"filters": 2, "kernel_size": 4, "strides": 2,
                                          "padding": "same"})], [None, 9, 3]),
    "Conv1D_causal_dilated": ([("Conv1D", {"filters": 3, "kernel_size": 3, "dilation_rate": 2,
                                            "padding": "causal", "use_bias": False})],
                              [None, 10, 2]),
    "Conv1D_channels_first_groups": ([("Conv1D", {"filters": 4, "kernel_size": 2, "groups": 2,
                                                   "data_format": "channels_first"})],
                                     [None, 4, 7]),
    "Conv2D": ([("Conv2D", {"filters": 4, "kernel_size": [3, 2], "activation": "tanh"})],
               [None, 7, 6, 3]),
    "Conv2D_same_asymmetric": ([("Conv2D", {"filters": 3, "kernel_size": 3, "strides": 2,
                                             "padding": "same"})], [None, 8, 7, 2]),
    "Conv2D_same_even_kernel": ([("Conv2D", {"filters": 2, "kernel_size": [2, 4],
                                              "padding": "same"})], [None, 5, 6, 3]),
    "Conv2D_same_symmetric": ([("Conv2D", {"filters": 2, "kernel_size": 3, "padding": "same",
                                            "bias_initializer": "ones"})], [None, 5, 5, 2]),
    "Conv2D_dilated": ([("Conv2D", {"filters": 2, "kernel_size": 3, "dilation_rate": [2, 1],
                                     "padding": "same"})], [None, 8, 8, 2]),
    "Conv2D_channels_first": ([("Conv2D", {"filters": 3, "kernel_size": 3, "strides": [2, 1],
                                            "padding": "same", "data_format": "channels_first"}),
                               ("Flatten", {"data_format": "channels_first"})], [None, 2, 7, 6]),
    "Conv2D_groups": ([("Conv2D", {"filters": 6, "kernel_size": 2, "groups": 3})],
                      [None, 5, 5, 6]),
    "Conv2D_flatten_dense": ([("Conv2D", {"filters": 3, "kernel_size": 3}), ("Flatten", {}),
                              ("Dense", {"units": 2})], [None, 6, 5, 2]),
    "Conv3D": ([("Conv3D", {"filters": 2, "kernel_size": [2, 3, 2], "strides": [1, 2, 1],
                            "padding": "same"})], [None, 4, 5, 4, 2]),
    "Conv3D_channels_first": ([("Conv3D", {"filters": 2, "kernel_size": 2,
                                            "data_format": "channels_first"})],
                              [None, 2, 4, 3, 4]),
}  # fmt: skip
