"""Keras's Masking layer: timesteps whose features all equal `mask_value` are masked for the
layers after it (the mask is `any(x != mask_value)` over the last axis), and zeroed."""

from __future__ import annotations

from typing import Any

import torch

from app.engine.layers import keys
from app.engine.layers.base import LAYERS, Layer


@LAYERS.add()
class Masking(Layer):
    supports_masking = True
    mask_value = keys.number(0.0)

    def compute_mask(self, x: Any, mask: Any) -> torch.Tensor | None:
        return torch.any(x != self.mask_value, dim=-1)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        keep = torch.any(x != self.mask_value, dim=-1, keepdim=True)
        return torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
