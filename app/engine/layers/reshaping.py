"""Keras reshaping layers: Reshape, Permute, RepeatVector, UpSampling1D, UpSampling2D.

(Flatten lives in core.py; ZeroPadding and Cropping in padding.py.) UpSampling2D's "nearest"
repeats rows and columns, as Keras does; "bilinear" and "bicubic" go through torch's
`interpolate` (half-pixel centres, no antialiasing), as Keras's torch backend `image.resize` does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_str
from app.engine.layers import keys, spatial
from app.engine.layers.base import LAYERS, Layer, Shape
from app.engine.layers.spatial import MAX_SIZE, IntTuple, split_shape

MAX_DIMS = 16


def _int_list(value: Any, loc: Loc) -> list[int]:
    if not isinstance(value, list | tuple) or not 0 < len(value) <= MAX_DIMS:
        raise ConfigError(loc, f"must be a list of 1 to {MAX_DIMS} integers, got {value!r}")
    out = []
    for item in value:
        if isinstance(item, float) and item.is_integer():
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, int):
            raise ConfigError(loc, f"must be a list of integers, got {value!r}")
        out.append(item)
    return out


def _read_target_shape(config: Mapping[str, Any], key: str, loc: Loc) -> tuple[int, ...]:
    if key not in config:
        raise ConfigError((*loc, key), "is required")
    target = _int_list(config[key], (*loc, key))
    if any(d < -1 or d == 0 or d > 1 << 24 for d in target) or target.count(-1) > 1:
        raise ConfigError((*loc, key), f"needs positive sizes and at most one -1, got {target}")
    return tuple(target)


def _read_dims(config: Mapping[str, Any], key: str, loc: Loc) -> tuple[int, ...]:
    if key not in config:
        raise ConfigError((*loc, key), "is required")
    dims = _int_list(config[key], (*loc, key))
    if sorted(dims) != list(range(1, len(dims) + 1)):
        raise ConfigError((*loc, key), f"must be a permutation of 1..{len(dims)}")
    return tuple(dims)


def _read_interpolation(config: Mapping[str, Any], key: str, loc: Loc, default: str) -> str:
    interpolation: str = get_str(config, key, loc, default)
    if interpolation.lower() not in ("nearest", "bilinear", "bicubic"):
        raise ConfigError(
            (*loc, key), f"must be nearest, bilinear or bicubic, got {interpolation!r}"
        )
    return interpolation.lower()


@LAYERS.add()
class Reshape(Layer):
    integer_input = "shape"
    target_shape = keys.Key[tuple[int, ...]](_read_target_shape, dump=list)

    def __post_init__(self) -> None:
        self.resolved: tuple[int, ...] = self.target_shape

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        rest = input_shape[1:]
        if any(d is None for d in rest):
            return (input_shape[0], *(None if d == -1 else d for d in self.target_shape))
        size = math.prod(d for d in rest if d is not None)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ConfigError(loc, f"cannot reshape {input_shape} to {self.target_shape}")
            self.resolved = tuple(size // known if d == -1 else d for d in self.target_shape)
        elif size != known:
            raise ConfigError(loc, f"cannot reshape {input_shape} to {self.target_shape}")
        return (input_shape[0], *self.resolved)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return torch.reshape(x, (x.shape[0], *self.resolved))


@LAYERS.add()
class Permute(Layer):
    integer_input = "shape"
    dims = keys.Key[tuple[int, ...]](_read_dims, dump=list)

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        if len(input_shape) != len(self.dims) + 1:
            raise ConfigError(
                loc,
                f"Permute{list(self.dims)} needs inputs of rank {len(self.dims) + 1}, "
                f"got {input_shape}",
            )
        return (input_shape[0], *(input_shape[d] for d in self.dims))

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return torch.permute(x, (0, *self.dims))


@LAYERS.add()
class RepeatVector(Layer):
    integer_input = "shape"
    n = keys.integer(min_value=1, max_value=MAX_SIZE)

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        if len(input_shape) != 2:
            raise ConfigError(loc, f"RepeatVector needs inputs of rank 2, got {input_shape}")
        return (input_shape[0], self.n, input_shape[1])

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return torch.repeat_interleave(x.unsqueeze(1), self.n, dim=1)


@LAYERS.add()
class UpSampling1D(Layer):
    integer_input = "shape"
    size = keys.integer(2, min_value=1, max_value=MAX_SIZE)

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        if len(input_shape) != 3:
            raise ConfigError(loc, f"UpSampling1D needs inputs of rank 3, got {input_shape}")
        steps = input_shape[1]
        return (input_shape[0], None if steps is None else steps * self.size, input_shape[2])

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return torch.repeat_interleave(x, self.size, dim=1)


@LAYERS.add()
class UpSampling2D(Layer):
    size = IntTuple((2, 2), size=2)
    data_format = spatial.data_format()
    interpolation = keys.Key[str](_read_interpolation, "nearest")

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        channels, (h, w) = split_shape(input_shape, 2, self.data_format, loc, "UpSampling2D")
        h2 = None if h is None else h * self.size[0]
        w2 = None if w is None else w * self.size[1]
        if self.data_format == "channels_last":
            return (input_shape[0], h2, w2, channels)
        return (input_shape[0], channels, h2, w2)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        # Keras resizes channels_last: channels_first inputs are permuted there and back.
        if self.data_format == "channels_first":
            x = torch.permute(x, (0, 2, 3, 1))
        if self.interpolation == "nearest":
            x = torch.repeat_interleave(x, self.size[0], dim=1)
            x = torch.repeat_interleave(x, self.size[1], dim=2)
        else:
            size = (x.shape[1] * self.size[0], x.shape[2] * self.size[1])
            y = F.interpolate(
                x.permute(0, 3, 1, 2), size=size, mode=self.interpolation, align_corners=False
            )
            x = y.permute(0, 2, 3, 1)
        if self.data_format == "channels_first":
            x = torch.permute(x, (0, 3, 1, 2))
        return x
