"""Keras convolution layers Conv1D, Conv2D, Conv3D, and what every convolution shares.

Kernels are stored in Keras's layout `(*kernel_size, in_channels // groups, filters)`, so weights
copy from Keras unchanged; the forward pass follows Keras's torch backend (`backend/torch/nn.py`
`conv`): channels_last inputs are permuted to channels-first (and, in 2-D and 3-D, laid out
channels_last in memory, as Keras does), the kernel is permuted to torch's `(out, in, ...)`, "same"
padding is TF-style with explicit zero padding when asymmetric, and the bias is added after the
result is permuted back. Conv1D also takes `padding="causal"` (left zero padding).

The shared pieces (the window's keys and `Window`, `keras_conv`, `add_bias`) also serve the
transposed, depthwise and separable convolutions (conv_transpose.py, conv_depthwise.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F

from app.engine.config.declared import REQUIRED, Derived, Key
from app.engine.config.errors import ConfigError, Loc
from app.engine.layers import keys, spatial
from app.engine.layers.base import LAYERS, Shape
from app.engine.layers.kernel import KernelLayer
from app.engine.layers.spatial import (
    apply_same_padding,
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
    """The sliding-window options every convolution reads the same way (each a declared key)."""

    kernel_size: tuple[int, ...]
    strides: tuple[int, ...]
    padding: str
    data_format: str
    dilation_rate: tuple[int, ...]

    @property
    def channels_last(self) -> bool:
        return self.data_format == "channels_last"


# -- the window's keys ---------------------------------------------------------------------------
class ClassKey(Key[Any]):
    """A key whose reader needs the layer class (its `rank`, its `paddings`):
    `read(cls, config, key, loc)`."""

    def read_from(self, cls: type, config: Mapping[str, Any], loc: Loc) -> Any:
        return self.read(cls, config, self.name, loc)


def spatial_ints(default: int | None = None, *, min_value: int = 1) -> Key[tuple[int, ...]]:
    """An int or a list of `rank` ints (Keras's `standardize_tuple`), kept as a tuple and written
    as a list; required where there is no default."""

    def read(cls: Any, config: Mapping[str, Any], key: str, loc: Loc) -> tuple[int, ...]:
        return get_int_tuple(config, key, loc, cls.rank, default, min_value=min_value)

    given = REQUIRED if default is None else Derived(lambda cls: (default,) * cls.rank)
    return ClassKey(read, given, dump=list)


def _read_output_padding(
    cls: Any, config: Mapping[str, Any], key: str, loc: Loc
) -> tuple[int, ...] | None:
    if config.get(key) is None:
        return None
    return get_int_tuple(config, key, loc, cls.rank, None, min_value=0)


def _read_padding(cls: Any, config: Mapping[str, Any], key: str, loc: Loc) -> str:
    return get_padding(config, loc, cls.paddings, any_case=True)


def output_padding_key() -> Key[tuple[int, ...] | None]:
    """ConvTranspose's `output_padding`: null, or an int or `rank` ints >= 0."""
    return ClassKey(_read_output_padding, None, dump=spatial.listed)


def padding_key() -> Key[str]:
    """`padding`, one of the class's `paddings`, in any case."""
    return ClassKey(_read_padding, "valid")


def check_strided_dilation(values: Mapping[str, Any], loc: Loc) -> None:
    """Keras refuses strides > 1 together with dilation > 1 in Conv and ConvTranspose (not in
    the depthwise and separable layers, where torch computes both)."""
    if max(values["strides"]) > 1 and max(values["dilation_rate"]) > 1:
        raise ConfigError(
            (*loc, "dilation_rate"), "strides > 1 cannot be combined with dilation_rate > 1"
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


class ConvBase(KernelLayer):
    """What Conv and ConvTranspose share: filters, the window, the kernel options, a kernel
    drawn for the input's channels, and the bias and activation after the convolution. Each
    family declares its keys, in Keras's config order."""

    rank: ClassVar[int]
    #: The `padding` values the layer takes.
    paddings: ClassVar[tuple[str, ...]] = ("valid", "same")
    filters: int
    window: Window

    def __post_init__(self) -> None:
        super().__post_init__()
        self.window = Window(**{field: self._value(field) for field in Window._fields})

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        check_strided_dilation(values, loc)

    def kernel_shape(self, channels: int, loc: Loc) -> tuple[int, ...]:
        raise NotImplementedError

    def output_spatial(self, spatial: tuple[int | None, ...], loc: Loc) -> tuple[int | None, ...]:
        raise NotImplementedError

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        channels, spatial = input_channels(input_shape, self.window, loc, self.class_name)
        kernel_shape = self.kernel_shape(channels, loc)
        out_spatial = self.output_spatial(spatial, loc)
        self.add_kernel(kernel_shape, self.filters, generator, loc)
        return join_shape(input_shape[0], self.filters, out_spatial, self.window.data_format)

    def bias_activation(self, y: torch.Tensor) -> torch.Tensor:
        if self.use_bias:
            y = add_bias(y, self.bias, self.window.channels_last)
        return self.activation_fn(y)


class _Conv(ConvBase):
    filters = keys.integer(min_value=1, max_value=MAX_FILTERS)
    kernel_size = spatial_ints()
    strides = spatial_ints(1)
    padding = padding_key()
    data_format = spatial.data_format()
    dilation_rate = spatial_ints(1)
    groups = keys.integer(1, min_value=1, max_value=MAX_FILTERS)
    activation = keys.activation()
    use_bias = keys.boolean(True)
    kernel_initializer = keys.initializer("glorot_uniform")
    bias_initializer = keys.initializer("zeros")
    kernel_regularizer = keys.regularizer("kernel")
    bias_regularizer = keys.regularizer("bias")
    activity_regularizer = keys.activity_regularizer()
    kernel_constraint = keys.constraint("kernel")
    bias_constraint = keys.constraint("bias")
    lora_rank = keys.must_be_null()
    lora_alpha = keys.anything(saved=False)

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        super()._validate(values, loc)
        filters, groups = values["filters"], values["groups"]
        if filters % groups:
            raise ConfigError((*loc, "groups"), f"filters ({filters}) must divide by groups")

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


@LAYERS.add("Convolution1D")
class Conv1D(_Conv):
    rank = 1
    paddings = ("valid", "same", "causal")


@LAYERS.add("Convolution2D")
class Conv2D(_Conv):
    rank = 2


@LAYERS.add("Convolution3D")
class Conv3D(_Conv):
    rank = 3
