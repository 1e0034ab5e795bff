"""Keras transposed convolutions: Conv1DTranspose, Conv2DTranspose, Conv3DTranspose.

The kernel is stored in Keras's layout `(*kernel_size, filters, in_channels)`; permuted like a
convolution kernel it is torch's `conv_transpose` weight `(in, out, *k)`. Keras's torch backend
(`conv_transpose`) does not hand "same" padding or `output_padding` to torch, which could not
express the asymmetric amounts: it runs the transposed convolution unpadded, giving the full
`(length - 1) * stride + effective_kernel` output, then crops each spatial axis to the window a
TF/JAX-style padded transposed convolution gives, zero-padding where a crop comes out negative.
`transpose_crops` is that arithmetic (`backend/common/backend_utils.py`), so shapes and numbers
match Keras exactly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from app.engine.config.errors import ConfigError, Loc
from app.engine.layers import keys, spatial
from app.engine.layers.base import LAYERS
from app.engine.layers.convolutional import (
    MAX_FILTERS,
    ConvBase,
    Window,
    output_padding_key,
    padding_key,
    spatial_ints,
)
from app.engine.layers.spatial import to_channels_first, to_channels_last

_CONV_T_FN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def transpose_crops(
    size: int, stride: int, dilation: int, padding: str, output_padding: int | None
) -> tuple[int, int]:
    """(left, right) amounts to crop from the unpadded transposed convolution's output along one
    axis; a negative amount means zeros are added there instead.

    Keras defines the output through the padding (left, right) a TF-style transposed
    convolution applies to the stride-dilated input: "valid" pads `effective - 1` on both sides
    plus `output_padding` on the right (by default enough to reach `max(effective, stride)`);
    "same" pads `stride + effective - 2` in all (or `effective + effective % 2 - 2 +
    output_padding`), the larger half on the left but never more than `effective - 1`. The
    unpadded torch result corresponds to `effective - 1` on each side."""
    effective = (size - 1) * dilation + 1
    if padding == "valid":
        extra = max(effective, stride) - effective if output_padding is None else output_padding
        left, right = effective - 1, effective - 1 + extra
    else:
        if output_padding is None:
            total = stride + effective - 2
        else:
            total = effective + effective % 2 - 2 + output_padding
        left = min((total + 1) // 2, effective - 1)
        right = total - left
    return effective - 1 - left, effective - 1 - right


def transpose_length(
    length: int, size: int, stride: int, dilation: int, padding: str, output_padding: int | None
) -> int:
    crop_left, crop_right = transpose_crops(size, stride, dilation, padding, output_padding)
    return (length - 1) * stride + (size - 1) * dilation + 1 - crop_left - crop_right


def keras_conv_transpose(
    x: torch.Tensor,
    kernel: torch.Tensor,
    window: Window,
    output_padding: tuple[int, ...] | None,
) -> torch.Tensor:
    """Keras's torch-backend `conv_transpose` for a kernel in Keras's `(*k, out, in)` layout."""
    n = kernel.dim() - 2
    if window.channels_last:
        x = to_channels_first(x)
    # (*k, out, in) -> (in, out, *k)
    weight = kernel.permute(n + 1, n, *range(n))
    y = _CONV_T_FN[n](x, weight, stride=window.strides, dilation=window.dilation_rate)
    crops = [
        transpose_crops(
            k, s, d, window.padding, None if output_padding is None else output_padding[i]
        )
        for i, (k, s, d) in enumerate(
            zip(window.kernel_size, window.strides, window.dilation_rate, strict=True)
        )
    ]
    index: list[slice] = [slice(None), slice(None)]
    index += [slice(max(0, lo), -hi if hi > 0 else None) for lo, hi in crops]
    y = y[tuple(index)]
    if any(lo < 0 or hi < 0 for lo, hi in crops):
        pads: list[int] = []
        for lo, hi in reversed(crops):  # F.pad lists the last axis first
            pads += [max(0, -lo), max(0, -hi)]
        y = F.pad(y, pads)
    return to_channels_last(y) if window.channels_last else y


class _ConvTranspose(ConvBase):
    filters = keys.integer(min_value=1, max_value=MAX_FILTERS)
    kernel_size = spatial_ints()
    strides = spatial_ints(1)
    padding = padding_key()
    output_padding = output_padding_key()
    data_format = spatial.data_format()
    dilation_rate = spatial_ints(1)
    activation = keys.activation()
    use_bias = keys.boolean(True)
    kernel_initializer = keys.initializer("glorot_uniform")
    bias_initializer = keys.initializer("zeros")
    kernel_regularizer = keys.regularizer("kernel")
    bias_regularizer = keys.regularizer("bias")
    activity_regularizer = keys.activity_regularizer()
    kernel_constraint = keys.constraint("kernel")
    bias_constraint = keys.constraint("bias")

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        super()._validate(values, loc)
        output_padding, strides = values["output_padding"], values["strides"]
        if output_padding is not None and any(
            op >= s for op, s in zip(output_padding, strides, strict=True)
        ):
            raise ConfigError(
                (*loc, "output_padding"),
                f"must be less than strides {list(strides)} in every dimension, "
                f"got {list(output_padding)}",
            )

    def kernel_shape(self, channels: int, loc: Loc) -> tuple[int, ...]:
        return (*self.window.kernel_size, self.filters, channels)

    def output_spatial(self, spatial: tuple[int | None, ...], loc: Loc) -> tuple[int | None, ...]:
        w = self.window
        out: list[int | None] = []
        for i, length in enumerate(spatial):
            if length is None:
                out.append(None)
                continue
            op = None if self.output_padding is None else self.output_padding[i]
            size = transpose_length(
                length, w.kernel_size[i], w.strides[i], w.dilation_rate[i], w.padding, op
            )
            if size <= 0:
                raise ConfigError(
                    loc,
                    f"{self.class_name}: a length of {length} gives an empty output "
                    f"(kernel {w.kernel_size[i]}, padding {w.padding!r}, output_padding {op})",
                )
            out.append(size)
        return tuple(out)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        y = keras_conv_transpose(x, self.kernel, self.window, self.output_padding)
        return self.bias_activation(y)


@LAYERS.add("Convolution1DTranspose")
class Conv1DTranspose(_ConvTranspose):
    rank = 1


@LAYERS.add("Convolution2DTranspose")
class Conv2DTranspose(_ConvTranspose):
    rank = 2


@LAYERS.add("Convolution3DTranspose")
class Conv3DTranspose(_ConvTranspose):
    rank = 3
