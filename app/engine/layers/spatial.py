"""Shared reading and arithmetic for spatial layers (convolution, pooling, padding, cropping).

Keras's torch backend runs every spatial op channels-first: a channels_last input is permuted to
`(N, C, ...)`, the torch op is applied, and the result is permuted back. "same" padding is
TensorFlow's (the extra element goes at the end); when it is asymmetric Keras pads explicitly,
with zeros for convolutions and by replicating the edge for pooling (`backend/torch/nn.py`).
These helpers follow that sequence so results match Keras to the last bit where torch allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from app.engine.config.declared import REQUIRED, Key
from app.engine.config.errors import ConfigError, Loc
from app.engine.layers.base import Shape

DATA_FORMATS = ("channels_last", "channels_first")
MAX_SIZE = 1 << 16  # kernel sizes, strides, paddings, repeats


def get_int_tuple(
    config: Mapping[str, Any],
    key: str,
    loc: Loc,
    n: int,
    default: Any,
    *,
    min_value: int = 1,
) -> tuple[int, ...]:
    """An int or a list of `n` ints (Keras's `standardize_tuple`); `default` if absent/null."""
    value = config.get(key)
    if value is None:
        if default is None:
            raise ConfigError((*loc, key), "is required")
        value = default
    items = [value] * n if not isinstance(value, list | tuple) else list(value)
    if len(items) != n:
        raise ConfigError((*loc, key), f"must be an integer or a list of {n} integers")
    out: list[int] = []
    for item in items:
        if isinstance(item, float) and item.is_integer():
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int):
            raise ConfigError((*loc, key), f"must be an integer or a list of {n} integers")
        if not min_value <= item <= MAX_SIZE:
            raise ConfigError((*loc, key), f"values must be in [{min_value}, {MAX_SIZE}]")
        out.append(item)
    return tuple(out)


Pair = tuple[int, int]


def get_pairs(config: Mapping[str, Any], key: str, loc: Loc, default: Any) -> tuple[Pair, Pair]:
    """ZeroPadding2D/Cropping2D amounts: an int, [h, w] or [[top, bottom], [left, right]]."""
    value = config.get(key, default)
    if value is None:
        value = default
    if isinstance(value, int | float) and not isinstance(value, bool):
        a, b = get_int_tuple({key: value}, key, loc, 2, None, min_value=0)
        return ((a, b), (a, b))
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigError(
            (*loc, key), "must be an integer, [h, w] or [[top, bottom], [left, right]]"
        )
    h0, h1 = get_int_tuple({"0": value[0]}, "0", (*loc, key), 2, None, min_value=0)
    w0, w1 = get_int_tuple({"1": value[1]}, "1", (*loc, key), 2, None, min_value=0)
    return ((h0, h1), (w0, w1))


def get_data_format(config: Mapping[str, Any], loc: Loc) -> str:
    value = config.get("data_format")
    if value is None:
        return "channels_last"
    if not isinstance(value, str) or value.lower() not in DATA_FORMATS:
        raise ConfigError((*loc, "data_format"), f"must be one of {list(DATA_FORMATS)}")
    return value.lower()


def get_padding(
    config: Mapping[str, Any], loc: Loc, choices: tuple[str, ...], *, any_case: bool
) -> str:
    value = config.get("padding", "valid")
    if isinstance(value, str) and any_case:
        value = value.lower()
    if value not in choices:
        raise ConfigError((*loc, "padding"), f"must be one of {list(choices)}, got {value!r}")
    return str(value)


# -- keys (the shape group's spatial layers declare these; see app.engine.layers.keys) ----------
class IntTuple(Key[tuple[int, ...]]):
    """An int or a list of ints (`get_int_tuple`), kept as a tuple and written as a list: `size`
    of them, or as many as the layer class's `rank` when `size` is None. A default of None is
    "left for the layer to fill in" (a null or absent value stays None); REQUIRED (or a default
    computing to it) makes a null or absent value "is required"."""

    def __init__(
        self, default: Any = REQUIRED, *, size: int | None = None, min_value: int = 1
    ) -> None:
        super().__init__(self._read_sized, default, dump=listed)
        self.size = size
        self.min_value = min_value

    def read_from(self, cls: type, config: Mapping[str, Any], loc: Loc) -> Any:
        size = self.size if self.size is not None else getattr(cls, "rank")  # noqa: B009
        return self._read(config, loc, size, self.default_for(cls))

    def _read_sized(self, config: Mapping[str, Any], key: str, loc: Loc, *default: Any) -> Any:
        assert self.size is not None, "a rank-sized key is read with its layer class"
        return self._read(config, loc, self.size, default[0] if default else REQUIRED)

    def _read(self, config: Mapping[str, Any], loc: Loc, size: int, default: Any) -> Any:
        if default is None and config.get(self.name) is None:
            return None
        fallback = None if default is REQUIRED else default
        return get_int_tuple(config, self.name, loc, size, fallback, min_value=self.min_value)


def listed(value: Any) -> Any:
    return None if value is None else list(value)


def pairs(default: tuple[Pair, Pair]) -> Key[tuple[Pair, Pair]]:
    """ZeroPadding2D/Cropping2D amounts (`get_pairs`), written as `[[top, bottom], [left,
    right]]`."""
    return Key(get_pairs, default, dump=lambda value: [list(p) for p in value])


def _read_data_format(config: Mapping[str, Any], key: str, loc: Loc, default: Any) -> str:
    return get_data_format(config, loc)


def data_format() -> Key[str]:
    """`data_format` in any case (`get_data_format`); null is channels_last."""
    return Key(_read_data_format, "channels_last")


def padding(choices: tuple[str, ...], *, any_case: bool) -> Key[str]:
    """`padding`, one of `choices` (`get_padding`); "valid" when absent."""

    def read(config: Mapping[str, Any], key: str, loc: Loc, default: Any) -> str:
        return get_padding(config, loc, choices, any_case=any_case)

    return Key(read, "valid")


def split_shape(
    input_shape: Shape, rank: int, data_format: str, loc: Loc, what: str
) -> tuple[int | None, tuple[int | None, ...]]:
    """(channels, spatial dims) of a `(batch, ...)` shape for a `rank`-D spatial layer."""
    if len(input_shape) != rank + 2:
        raise ConfigError(
            loc, f"{what} expects inputs of rank {rank + 2} (batch included), got {input_shape}"
        )
    if data_format == "channels_last":
        return input_shape[-1], tuple(input_shape[1:-1])
    return input_shape[1], tuple(input_shape[2:])


def join_shape(
    batch: int | None, channels: int | None, spatial: tuple[int | None, ...], data_format: str
) -> Shape:
    if data_format == "channels_last":
        return (batch, *spatial, channels)
    return (batch, channels, *spatial)


def output_length(
    length: int | None, size: int, stride: int, padding: str, dilation: int, loc: Loc, what: str
) -> int | None:
    """Keras's `compute_conv_output_shape`/`compute_pooling_output_shape` for one dimension."""
    if length is None:
        return None
    if padding in ("same", "causal"):
        return (length - 1) // stride + 1
    out = (length - dilation * (size - 1) - 1) // stride + 1
    if out <= 0:
        raise ConfigError(
            loc,
            f"{what}: a window of {size} (dilation {dilation}) does not fit a length of {length}",
        )
    return out


def same_padding(length: int, size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Keras torch backend's `_compute_padding_length`: TF-style, extra element at the end."""
    effective = (size - 1) * dilation + 1
    if stride == 1:
        total = effective - 1
    else:
        total = max(0, ((length + stride - 1) // stride - 1) * stride + effective - length)
    return total // 2, total - total // 2


def apply_same_padding(
    x: torch.Tensor,
    sizes: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    mode: str,
) -> tuple[torch.Tensor, list[int] | int]:
    """Pad a channels-first `x` for "same": symmetric padding is handed to the torch op, an
    asymmetric one is applied here (`mode` "constant" for convolutions, "replicate" for pooling)."""
    pads = [
        same_padding(length, k, s, d)
        for length, k, s, d in zip(x.shape[2:], sizes, strides, dilations, strict=True)
    ]
    if all(left == right for left, right in pads):
        return x, [left for left, _ in pads]
    flat: list[int] = []
    for left, right in reversed(pads):
        flat.extend((left, right))
    return F.pad(x, tuple(flat), mode=mode), 0


def to_channels_first(x: torch.Tensor) -> torch.Tensor:
    """`(N, ..., C)` -> contiguous `(N, C, ...)`, as Keras's `_transpose_spatial_inputs`."""
    return x.movedim(-1, 1).contiguous()


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """`(N, C, ...)` -> `(N, ..., C)` (a view), as Keras's `_transpose_spatial_outputs`."""
    return x.movedim(1, -1)
