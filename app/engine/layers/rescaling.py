"""Keras's Rescaling preprocessing layer: `x * scale + offset`, with scalar scale and offset (as
float32 constants, as Keras casts them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_float
from app.engine.config.registry import known_keys
from app.engine.layers.base import BASE_KEYS, LAYERS, Layer


@LAYERS.register("Rescaling")
class Rescaling(Layer):
    class_name = "Rescaling"
    integer_input = "cast"  # Keras casts its input to float32 first
    supports_masking = True
    config_keys = ("scale", "offset")
    _scale: torch.Tensor
    _offset: torch.Tensor

    def __init__(self, *, name: str, scale: float, offset: float) -> None:
        super().__init__(name=name)
        self.scale = scale
        self.offset = offset
        self.register_buffer("_scale", torch.tensor(scale, dtype=torch.float32), persistent=False)
        self.register_buffer("_offset", torch.tensor(offset, dtype=torch.float32), persistent=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        for key in ("scale", "offset"):
            if isinstance(config.get(key), list | tuple | Mapping):
                raise ConfigError((*loc, key), "only a single number is supported yet")
        return cls(
            name=name,
            scale=get_float(config, "scale", loc),
            offset=get_float(config, "offset", loc, 0.0),
        )

    def layer_config(self) -> dict[str, Any]:
        return {"scale": self.scale, "offset": self.offset}

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return x * self._scale + self._offset
