"""Keras's Masking layer: timesteps whose features all equal `mask_value` are masked for the
layers after it (the mask is `any(x != mask_value)` over the last axis), and zeroed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import Loc
from app.engine.config.readers import get_float
from app.engine.config.registry import known_keys
from app.engine.layers.base import BASE_KEYS, LAYERS, Layer


@LAYERS.register("Masking")
class Masking(Layer):
    class_name = "Masking"
    config_keys = ("mask_value",)
    supports_masking = True

    def __init__(self, *, name: str, mask_value: float = 0.0) -> None:
        super().__init__(name=name)
        self.mask_value = mask_value

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        return cls(name=name, mask_value=get_float(config, "mask_value", loc, 0.0))

    def layer_config(self) -> dict[str, Any]:
        return {"mask_value": self.mask_value}

    def compute_mask(self, x: Any, mask: Any) -> torch.Tensor | None:
        return torch.any(x != self.mask_value, dim=-1)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        keep = torch.any(x != self.mask_value, dim=-1, keepdim=True)
        return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
