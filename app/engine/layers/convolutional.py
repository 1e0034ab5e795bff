"""Keras convolution layers Conv1D, Conv2D, Conv3D, and what every convolution shares.

Kernels are stored in Keras's layout `(*kernel_size, in_channels // groups, filters)`, so weights
copy from Keras unchanged; the forward pass follows Keras's torch backend (`backend/torch/nn.py`
`conv`): channels_last inputs are permuted to channels-first (and, in 2-D and 3-D, laid out
channels_last in memory, as Keras does), the kernel is permuted to torch's `(out, in, ...)`, "same"
padding is TF-style with explicit zero padding when asymmetric, and the bias is added after the
result is permuted back. Conv1D also takes `padding="causal"` (left zero padding).

The shared pieces (`Window`, `read_window`, `keras_conv`, `add_bias`) also serve the transposed,
depthwise and separable convolutions (conv_transpose.py, conv_depthwise.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_int
from app.engine.config.registry import known_keys
from app.engine.layers.base import BASE_KEYS, LAYERS, Layer, Shape, option_weights, require_null
from app.engine.layers.kernel import KERNEL_OPTION_KEYS, KernelLayer, read_kernel_args
from app.engine.layers.spatial import (
    apply_same_padding,
    get_data_format,
    get_int_tuple,
    get_padding,
    join_shape,
    output_length,
    split_shape,
    to_channels_first,
    to_channels_last,
)

MAX_FILTERS = 1 << 16

_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_MEMORY_FORMAT = {2: torch.channels_last, 3: torch.channels_last_3d}


class Window(NamedTuple):
    """The sliding-window options every convolution reads the same way."""

    kernel_size: tuple[int, ...]
    strides: tuple[int, ...]
    padding: str
    data_format: str
    dilation_rate: tuple[int, ...]

    @property
    def channels_last(self) -> bool:
        return self.data_format == "channels_last"


def read_window(
    config: Mapping[str, Any],
    loc: Loc,
    rank: int,
    paddings: tuple[str, ...],
    *,
    strided_dilation: bool = False,
) -> Window:
    """kernel_size (required), strides, padding (any case), data_format and dilation_rate.
    Keras refuses strides > 1 together with dilation > 1 in Conv and ConvTranspose but not in the
    depthwise and separable layers (`strided_dilation=True`), where torch computes both."""
    strides = get_int_tuple(config, "strides", loc, rank, 1)
    dilation = get_int_tuple(config, "dilation_rate", loc, rank, 1)
    if not strided_dilation and max(strides) > 1 and max(dilation) > 1:
        raise ConfigError(
            (*loc, "dilation_rate"), "strides > 1 cannot be combined with dilation_rate > 1"
        )
    return Window(
        kernel_size=get_int_tuple(config, "kernel_size", loc, rank, None),
        strides=strides,
        padding=get_padding(config, loc, paddings, any_case=True),
        data_format=get_data_format(config, loc),
        dilation_rate=dilation,
    )


def input_channels(
    input_shape: Shape, window: Window, loc: Loc, what: str
) -> tuple[int, tuple[int | None, ...]]:
    """(channels, spatial dims) of a convolution's input; the channels must be known."""
    rank = len(window.kernel_size)
    channels, spatial = split_shape(input_shape, rank, window.data_format, loc, what)
    if channels is None:
        raise ConfigError(loc, f"{what} needs a known channel dimension")
    return channels, spatial


def conv_output_spatial(
    spatial: tuple[int | None, ...], window: Window, loc: Loc, what: str
) -> tuple[int | None, ...]:
    return tuple(
        output_length(length, k, s, window.padding, d, loc, what)
        for length, k, s, d in zip(
            spatial, window.kernel_size, window.strides, window.dilation_rate, strict=True
        )
    )


def _channels_last_memory(t: torch.Tensor, rank: int) -> torch.Tensor:
    """Keras's `_maybe_convert_to_channels_last` (2-D and 3-D only)."""
    fmt = _MEMORY_FORMAT.get(rank)
    if fmt is not None and not t.is_contiguous(memory_format=fmt):
        return t.contiguous(memory_format=fmt)
    return t


def keras_conv(
    x: torch.Tensor,
    kernel: torch.Tensor,
    strides: tuple[int, ...],
    padding: str,
    dilation: tuple[int, ...],
    channels_last: bool,
) -> torch.Tensor:
    """Keras's torch-backend `conv` for a kernel in Keras's `(*k, in // groups, out)` layout
    (the groups follow from the input's channels, as there). `padding` is "valid" or "same"."""
    n = kernel.dim() - 2
    if channels_last:
        x = to_channels_first(x)
    # (*k, in, out) -> (out, in, *k)
    kernel = kernel.permute(n + 1, n, *range(n))
    if channels_last:
        x = _channels_last_memory(x, n)
        kernel = _channels_last_memory(kernel, n)
    groups = x.shape[1] // kernel.shape[1]
    pad: list[int] | int = 0
    if padding == "same":
        x, pad = apply_same_padding(x, tuple(kernel.shape[2:]), strides, dilation, "constant")
    y = _CONV_FN[n](x, kernel, stride=strides, padding=pad, dilation=dilation, groups=groups)
    return to_channels_last(y) if channels_last else y


def add_bias(y: torch.Tensor, bias: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Add a per-channel bias to a convolution's output (after it is back in its data format)."""
    n = y.dim() - 2
    shape = (1,) * (n + 1) + (-1,) if channels_last else (1, -1) + (1,) * n
    return y + bias.reshape(shape)


def window_config(window: Window, **after_padding: Any) -> dict[str, Any]:
    """The window options as Keras writes them; `after_padding` goes between padding and
    data_format (where ConvTranspose writes output_padding)."""
    return {
        "kernel_size": list(window.kernel_size),
        "strides": list(window.strides),
        "padding": window.padding,
        **after_padding,
        "data_format": window.data_format,
        "dilation_rate": list(window.dilation_rate),
    }


class ConvBase(KernelLayer):
    """What Conv and ConvTranspose share: filters, the window, the kernel options, a kernel
    drawn for the input's channels, and the bias and activation after the convolution."""

    rank: ClassVar[int]
    weight_options = option_weights("kernel", "bias")

    def __init__(
        self,
        *,
        name: str,
        filters: int,
        window: Window,
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
        self.set_kernel_options(activation, use_bias, kernel_initializer, bias_initializer, loc)

    def kernel_shape(self, channels: int, loc: Loc) -> tuple[int, ...]:
        raise NotImplementedError

    def output_spatial(self, spatial: tuple[int | None, ...], loc: Loc) -> tuple[int | None, ...]:
        raise NotImplementedError

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        channels, spatial = input_channels(input_shape, self.window, loc, self.class_name)
        kernel_shape = self.kernel_shape(channels, loc)
        out_spatial = self.output_spatial(spatial, loc)
        self.add_kernel(kernel_shape, self.filters, generator)
        return join_shape(input_shape[0], self.filters, out_spatial, self.window.data_format)

    def bias_activation(self, y: torch.Tensor) -> torch.Tensor:
        if self.use_bias:
            y = add_bias(y, self.bias, self.window.channels_last)
        return self.activation_fn(y)


class _Conv(ConvBase):
    config_keys = (
        "filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
        "activation", "use_bias", "kernel_initializer", "bias_initializer",
        "kernel_regularizer", "bias_regularizer", "activity_regularizer",
        "kernel_constraint", "bias_constraint", "lora_rank", "lora_alpha",
    )  # fmt: skip

    def __init__(self, *, groups: int, **options: Any) -> None:
        super().__init__(**options)
        self.groups = groups

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        require_null(config, ("lora_rank",), loc)
        filters = get_int(config, "filters", loc, min_value=1, max_value=MAX_FILTERS)
        groups = get_int(config, "groups", loc, 1, min_value=1, max_value=MAX_FILTERS)
        choices = ("valid", "same", "causal") if cls.rank == 1 else ("valid", "same")
        window = read_window(config, loc, cls.rank, choices)
        if filters % groups:
            raise ConfigError((*loc, "groups"), f"filters ({filters}) must divide by groups")
        return cls(
            name=name,
            filters=filters,
            window=window,
            groups=groups,
            **read_kernel_args(config, loc),
        )

    def layer_config(self) -> dict[str, Any]:
        return {
            "filters": self.filters,
            **window_config(self.window),
            "groups": self.groups,
            **self.kernel_config(),
            **dict.fromkeys(KERNEL_OPTION_KEYS),
        }

    def kernel_shape(self, channels: int, loc: Loc) -> tuple[int, ...]:
        if channels % self.groups:
            raise ConfigError(
                loc, f"input channels ({channels}) must divide by groups ({self.groups})"
            )
        return (*self.window.kernel_size, channels // self.groups, self.filters)

    def output_spatial(self, spatial: tuple[int | None, ...], loc: Loc) -> tuple[int | None, ...]:
        return conv_output_spatial(spatial, self.window, loc, self.class_name)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        w = self.window
        padding = w.padding
        if padding == "causal":
            left = w.dilation_rate[0] * (w.kernel_size[0] - 1)
            x = F.pad(x, (0, 0, left, 0) if w.channels_last else (left, 0))
            padding = "valid"
        y = keras_conv(x, self.kernel, w.strides, padding, w.dilation_rate, w.channels_last)
        return self.bias_activation(y)


@LAYERS.register("Conv1D", "Convolution1D")
class Conv1D(_Conv):
    class_name = "Conv1D"
    rank = 1


@LAYERS.register("Conv2D", "Convolution2D")
class Conv2D(_Conv):
    class_name = "Conv2D"
    rank = 2


@LAYERS.register("Conv3D", "Convolution3D")
class Conv3D(_Conv):
    class_name = "Conv3D"
    rank = 3
