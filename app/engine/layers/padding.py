"""Keras ZeroPadding1D/2D and Cropping1D/2D (Cropping1D is channels_last only, as in Keras)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.registry import known_keys
from app.engine.layers.base import BASE_KEYS, LAYERS, Layer, Shape
from app.engine.layers.spatial import get_data_format, get_int_tuple, get_pairs, split_shape

Pairs = tuple[tuple[int, int], ...]


class _Spatial(Layer):
    """Pads (`sign` +1) or crops (`sign` -1) each spatial dimension by (before, after)."""

    rank: ClassVar[int]
    sign: ClassVar[int]
    key: ClassVar[str]
    has_data_format: ClassVar[bool] = True
    integer_input = "shape"

    def __init__(self, *, name: str, amounts: Pairs, data_format: str) -> None:
        super().__init__(name=name)
        self.amounts = amounts
        self.data_format = data_format

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        default = 1 if cls.sign > 0 or cls.rank == 1 else 0
        if cls.rank == 1:
            pair = get_int_tuple(config, cls.key, loc, 2, default, min_value=0)
            amounts: Pairs = ((pair[0], pair[1]),)
        else:
            amounts = get_pairs(config, cls.key, loc, default)
        fmt = get_data_format(config, loc) if cls.has_data_format else "channels_last"
        return cls(name=name, amounts=amounts, data_format=fmt)

    def layer_config(self) -> dict[str, Any]:
        value: Any = list(self.amounts[0]) if self.rank == 1 else [list(p) for p in self.amounts]
        out = {self.key: value}
        if self.has_data_format:
            out["data_format"] = self.data_format
        return out

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        channels, spatial = split_shape(
            input_shape, self.rank, self.data_format, loc, self.class_name
        )
        out: list[int | None] = []
        for length, (before, after) in zip(spatial, self.amounts, strict=True):
            if length is None:
                out.append(None)
                continue
            new = length + self.sign * (before + after)
            if new <= 0:
                raise ConfigError(
                    loc, f"cropping {before + after} from a length of {length} leaves nothing"
                )
            out.append(new)
        if self.data_format == "channels_last":
            return (input_shape[0], *out, channels)
        return (input_shape[0], channels, *out)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        first = 1 if self.data_format == "channels_last" else 2
        if self.sign > 0:
            # torch pads from the last dimension backwards.
            flat: list[int] = [0, 0] if self.data_format == "channels_last" else []
            for before, after in reversed(self.amounts):
                flat.extend((before, after))
            return F.pad(x, flat)
        index: list[slice] = [slice(None)] * x.dim()
        for axis, (before, after) in enumerate(self.amounts, start=first):
            index[axis] = slice(before, x.shape[axis] - after)
        return x[tuple(index)]


@LAYERS.register("ZeroPadding1D")
class ZeroPadding1D(_Spatial):
    class_name = "ZeroPadding1D"
    config_keys = ("padding", "data_format")
    rank, sign, key = 1, 1, "padding"


@LAYERS.register("ZeroPadding2D")
class ZeroPadding2D(_Spatial):
    class_name = "ZeroPadding2D"
    config_keys = ("padding", "data_format")
    rank, sign, key = 2, 1, "padding"


@LAYERS.register("Cropping1D")
class Cropping1D(_Spatial):
    class_name = "Cropping1D"
    config_keys = ("cropping",)
    rank, sign, key, has_data_format = 1, -1, "cropping", False


@LAYERS.register("Cropping2D")
class Cropping2D(_Spatial):
    class_name = "Cropping2D"
    config_keys = ("cropping", "data_format")
    rank, sign, key = 2, -1, "cropping"
