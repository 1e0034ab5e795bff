"""EinsumDense in a Sequential: plain, batched-sequence, ellipsis and partial output shapes."""

from __future__ import annotations

from typing import Any

CASES: dict[str, tuple[list[tuple[str, dict[str, Any]]], list[Any]]] = {
    "EinsumDense": ([("EinsumDense", {"equation": "ab,bc->ac", "output_shape": 3,
                                      "bias_axes": "c", "activation": "tanh"})], [None, 4]),
    "EinsumDense_no_bias": ([("EinsumDense", {"equation": "ab,bc->ac", "output_shape": [2]})],
                            [None, 5]),
    "EinsumDense_sequence": ([("EinsumDense", {"equation": "abc,cd->abd", "output_shape": [3, 2],
                                               "bias_axes": "d"})], [None, 3, 4]),
    "EinsumDense_unknown_length": ([("EinsumDense", {"equation": "abc,cd->abd",
                                                     "output_shape": [None, 2],
                                                     "bias_axes": "d"})], [None, 3, 4]),
    "EinsumDense_ellipsis": ([("EinsumDense", {"equation": "...b,bc->...c", "output_shape": 3,
                                               "bias_axes": "c"})], [None, 2, 3, 4]),
    "EinsumDense_ellipsis_heads": ([("EinsumDense", {"equation": "...b,bcd->...cd",
                                                     "output_shape": [2, 3],
                                                     "bias_axes": "cd"})], [None, 5, 4]),
    "EinsumDense_trailing_ellipsis": ([("EinsumDense", {"equation": "ab...,bc->ac...",
                                                        "output_shape": [3],
                                                        "bias_axes": "c"})], [None, 4, 2]),
    "EinsumDense_inner_bias": ([("EinsumDense", {"equation": "abc,cde->abde",
                                                 "output_shape": [None, 2, 3],
                                                 "bias_axes": "d",
                                                 "kernel_initializer": "he_normal"})],
                               [None, 3, 4]),
}  # fmt: skip
