"""Keras's Rescaling preprocessing layer: `x * scale + offset`, with scalar scale and offset (as
float32 constants, as Keras casts them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_float
from app.engine.layers import keys
from app.engine.layers.base import LAYERS, Layer


def _read_scalar(config: Mapping[str, Any], key: str, loc: Loc, *default: float) -> float:
    if isinstance(config.get(key), list | tuple | Mapping):
        raise ConfigError((*loc, key), "only a single number is supported yet")
    value: float = get_float(config, key, loc, *default)
    return value


@LAYERS.add()
class Rescaling(Layer):
    integer_input = "cast"  # Keras casts its input to float32 first
    supports_masking = True
    scale = keys.Key[float](_read_scalar)
    offset = keys.Key[float](_read_scalar, 0.0)
    _scale: torch.Tensor
    _offset: torch.Tensor

    def __post_init__(self) -> None:
        scale = torch.tensor(self.scale, dtype=torch.float32)
        self.register_buffer("_scale", scale, persistent=False)
        offset = torch.tensor(self.offset, dtype=torch.float32)
        self.register_buffer("_offset", offset, persistent=False)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return x * self._scale + self._offset
