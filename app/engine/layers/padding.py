"""Keras ZeroPadding1D/2D and Cropping1D/2D (Cropping1D is channels_last only, as in Keras)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from app.engine.config.errors import ConfigError, Loc
from app.engine.layers import spatial
from app.engine.layers.base import LAYERS, Layer, Shape
from app.engine.layers.spatial import IntTuple, split_shape

Pairs = tuple[tuple[int, int], ...]


class _Spatial(Layer):
    """Pads (`sign` +1) or crops (`sign` -1) each spatial dimension by (before, after): the
    amounts are the `padding` or `cropping` key, the layout `data_format` where the layer has
    it (channels_last otherwise)."""

    rank: ClassVar[int]
    sign: ClassVar[int]
    integer_input = "shape"

    def __post_init__(self) -> None:
        given: Any = self._value("padding" if self.sign > 0 else "cropping")
        self.amounts: Pairs = (given,) if self.rank == 1 else given
        has_format = "data_format" in self.declared_keys
        self.layout: str = self._value("data_format") if has_format else "channels_last"

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        channels, lengths = split_shape(input_shape, self.rank, self.layout, loc, self.class_name)
        out: list[int | None] = []
        for length, (before, after) in zip(lengths, self.amounts, strict=True):
            if length is None:
                out.append(None)
                continue
            new = length + self.sign * (before + after)
            if new <= 0:
                raise ConfigError(
                    loc, f"cropping {before + after} from a length of {length} leaves nothing"
                )
            out.append(new)
        if self.layout == "channels_last":
            return (input_shape[0], *out, channels)
        return (input_shape[0], channels, *out)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        first = 1 if self.layout == "channels_last" else 2
        if self.sign > 0:
            # torch pads from the last dimension backwards.
            flat: list[int] = [0, 0] if self.layout == "channels_last" else []
            for before, after in reversed(self.amounts):
                flat.extend((before, after))
            return F.pad(x, flat)
        index: list[slice] = [slice(None)] * x.dim()
        for axis, (before, after) in enumerate(self.amounts, start=first):
            index[axis] = slice(before, x.shape[axis] - after)
        return x[tuple(index)]


@LAYERS.add()
class ZeroPadding1D(_Spatial):
    rank, sign = 1, 1
    padding = IntTuple((1, 1), size=2, min_value=0)
    data_format = spatial.data_format()


@LAYERS.add()
class ZeroPadding2D(_Spatial):
    rank, sign = 2, 1
    padding = spatial.pairs(((1, 1), (1, 1)))
    data_format = spatial.data_format()


@LAYERS.add()
class Cropping1D(_Spatial):
    rank, sign = 1, -1
    cropping = IntTuple((1, 1), size=2, min_value=0)


@LAYERS.add()
class Cropping2D(_Spatial):
    rank, sign = 2, -1
    cropping = spatial.pairs(((0, 0), (0, 0)))
    data_format = spatial.data_format()
