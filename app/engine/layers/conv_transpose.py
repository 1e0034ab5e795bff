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

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from app.engine.errors import ConfigError, Loc
from app.engine.layers.base import BASE_KEYS, LAYERS, Layer, Shape, option_weights
from app.engine.layers.convolutional import (
    MAX_FILTERS,
    Window,
    add_bias,
    input_channels,
    read_window,
)
from app.engine.layers.spatial import (
    get_int_tuple,
    join_shape,
    to_channels_first,
    to_channels_last,
)
from app.engine.params import get_bool, get_int
from app.engine.registry import known_keys

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


class _ConvTranspose(Layer):
    rank: ClassVar[int]
    kernel: torch.Tensor
    bias: torch.Tensor
    weight_options = option_weights("kernel", "bias")
    config_keys = (
        "filters", "kernel_size", "strides", "padding", "output_padding", "data_format",
        "dilation_rate", "activation", "use_bias", "kernel_initializer", "bias_initializer",
        "kernel_regularizer", "bias_regularizer", "activity_regularizer",
        "kernel_constraint", "bias_constraint",
    )  # fmt: skip

    def __init__(
        self,
        *,
        name: str,
        filters: int,
        window: Window,
        output_padding: tuple[int, ...] | None,
        activation: Any,
        use_bias: bool,
        kernel_initializer: Any,
        bias_initializer: Any,
        trainable: bool,
        loc: Loc,
    ) -> None:
        super().__init__(name=name, trainable=trainable)
        self.filters = filters
        self.window = window
        self.output_padding = output_padding
        self.set_kernel_options(activation, use_bias, kernel_initializer, bias_initializer, loc)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        window = read_window(config, loc, cls.rank, ("valid", "same"))
        output_padding = None
        if config.get("output_padding") is not None:
            output_padding = get_int_tuple(
                config, "output_padding", loc, cls.rank, None, min_value=0
            )
            if any(op >= s for op, s in zip(output_padding, window.strides, strict=True)):
                raise ConfigError(
                    (*loc, "output_padding"),
                    f"must be less than strides {list(window.strides)} in every dimension, "
                    f"got {list(output_padding)}",
                )
        return cls(
            name=name,
            filters=get_int(config, "filters", loc, min_value=1, max_value=MAX_FILTERS),
            window=window,
            output_padding=output_padding,
            activation=config.get("activation"),
            use_bias=get_bool(config, "use_bias", loc, True),
            kernel_initializer=config.get("kernel_initializer", "glorot_uniform"),
            bias_initializer=config.get("bias_initializer", "zeros"),
            trainable=get_bool(config, "trainable", loc, True),
            loc=loc,
        )

    def layer_config(self) -> dict[str, Any]:
        w = self.window
        return {
            "filters": self.filters,
            "kernel_size": list(w.kernel_size),
            "strides": list(w.strides),
            "padding": w.padding,
            "output_padding": None if self.output_padding is None else list(self.output_padding),
            "data_format": w.data_format,
            "dilation_rate": list(w.dilation_rate),
            "activation": self.activation_name,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_init_config,
            "bias_initializer": self.bias_init_config,
            "kernel_regularizer": None,
            "bias_regularizer": None,
            "activity_regularizer": None,
            "kernel_constraint": None,
            "bias_constraint": None,
        }

    def _output_spatial(self, spatial: tuple[int | None, ...], loc: Loc) -> tuple[int | None, ...]:
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

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        w = self.window
        channels, spatial = input_channels(input_shape, w, loc, self.class_name)
        out_spatial = self._output_spatial(spatial, loc)
        self.add_weight(
            "kernel", self.kernel_init((*w.kernel_size, self.filters, channels), generator)
        )
        if self.use_bias:
            self.add_weight("bias", self.bias_init((self.filters,), generator))
        return join_shape(input_shape[0], self.filters, out_spatial, w.data_format)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        y = keras_conv_transpose(x, self.kernel, self.window, self.output_padding)
        if self.use_bias:
            y = add_bias(y, self.bias, self.window.channels_last)
        return self.activation(y)


@LAYERS.register("Conv1DTranspose", "Convolution1DTranspose")
class Conv1DTranspose(_ConvTranspose):
    class_name = "Conv1DTranspose"
    rank = 1


@LAYERS.register("Conv2DTranspose", "Convolution2DTranspose")
class Conv2DTranspose(_ConvTranspose):
    class_name = "Conv2DTranspose"
    rank = 2


@LAYERS.register("Conv3DTranspose", "Convolution3DTranspose")
class Conv3DTranspose(_ConvTranspose):
    class_name = "Conv3DTranspose"
    rank = 3
