"""Keras's activation layers: ReLU, LeakyReLU, PReLU, ELU, Softmax.

ReLU follows Keras's `ReLU.static_call` op for op (leaky_relu when only the slope is set; else
threshold, relu6 or relu, clip, then `x - slope * relu(threshold - x)`). LeakyReLU's default slope
is 0.3 (the function `leaky_relu` defaults to 0.2). PReLU is `relu(x) + (-alpha) * relu(-x)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.config.readers import get_axes, get_float
from app.engine.layers import keys
from app.engine.layers.base import LAYERS, Layer, Shape


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_slope(config: Mapping[str, Any], key: str, loc: Loc, default: float) -> float:
    key = "alpha" if "alpha" in config else key  # Keras's deprecated spelling
    slope: float = get_float(config, key, loc, default, min_value=0.0)
    return slope


def _read_shared_axes(config: Mapping[str, Any], key: str, loc: Loc, default: None) -> Any:
    shared = config.get(key)
    if _is_int(shared):
        shared = [shared]
    if shared is not None and not (
        isinstance(shared, list | tuple) and all(_is_int(a) for a in shared)
    ):
        raise ConfigError((*loc, key), f"must be an integer or a list of them, got {shared!r}")
    return None if shared is None else list(shared)


@LAYERS.add()
class ReLU(Layer):
    supports_masking = True
    max_value = keys.number_or_none(min_value=0.0)
    negative_slope = keys.number(0.0, min_value=0.0)
    threshold = keys.number(0.0, min_value=0.0)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        slope, max_value, threshold = self.negative_slope, self.max_value, self.threshold
        negative_part: torch.Tensor | None = None
        if slope != 0.0:
            if max_value is None and threshold == 0:
                return F.leaky_relu(x, slope)
            negative_part = torch.relu(-x + threshold) if threshold != 0 else torch.relu(-x)
        clip = max_value is not None
        if threshold != 0:
            th = torch.tensor(threshold, dtype=x.dtype, device=x.device)
            x = torch.where(x > th, x, torch.zeros((), dtype=x.dtype, device=x.device))
        elif max_value == 6:
            x = F.relu6(x)
            clip = False
        else:
            x = torch.relu(x)
        if clip and max_value is not None:
            lo = torch.zeros((), dtype=x.dtype, device=x.device)
            x = torch.clip(x, lo, torch.tensor(max_value, dtype=x.dtype, device=x.device))
        if negative_part is not None:
            x = x - slope * negative_part
        return x


@LAYERS.add()
class LeakyReLU(Layer):
    supports_masking = True
    negative_slope = keys.Key[float](_read_slope, 0.3)
    alpha = keys.anything(saved=False)  # read as negative_slope

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope)


@LAYERS.add()
class PReLU(Layer):
    supports_masking = True
    alpha_initializer = keys.initializer("zeros", null=True, empty=True)
    alpha_regularizer = keys.regularizer("alpha")
    alpha_constraint = keys.constraint("alpha")
    shared_axes = keys.Key[list[int] | None](_read_shared_axes, None)
    alpha: torch.Tensor

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        rank = len(input_shape)
        shared = self.shared_axes or []
        for a in shared:
            if not 1 <= a < rank:
                raise ConfigError(
                    (*loc, "shared_axes"), f"axis {a} is not in 1..{rank - 1} for {input_shape}"
                )
        shape = []
        for d in range(1, rank):
            size = 1 if d in shared else input_shape[d]
            if size is None:
                raise ConfigError(
                    (*loc, "shared_axes"),
                    f"axis {d} of {input_shape} has no size; share it (list it in shared_axes)",
                )
            shape.append(size)
        self.add_weight("alpha", keys.draw(self, "alpha_initializer", loc)(tuple(shape), generator))
        return input_shape

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return torch.relu(x) + -self.alpha * torch.relu(-x)


@LAYERS.add()
class ELU(Layer):
    """Keras's ELU layer leaves `alpha` out of its own get_config, so a Keras to_json() of an ELU
    with a non-default alpha reloads with alpha 1.0 (in Keras and here alike)."""

    supports_masking = True
    alpha = keys.number(1.0)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return F.elu(x, self.alpha)


@LAYERS.add()
class Softmax(Layer):
    supports_masking = True
    uses_mask = True
    axis = keys.Key[int | list[int]](get_axes, -1)

    def __post_init__(self) -> None:
        self._dims: list[int] = []

    def mask_shape(self, input_shape: Any) -> Any:
        return None  # broadcast against the input from the right, checked in forward

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        rank = len(input_shape)
        given = [self.axis] if isinstance(self.axis, int) else self.axis
        for a in given:
            if not -rank <= a < rank or a % rank == 0:
                raise ConfigError(
                    (*loc, "axis"), f"axis {a} is not a feature axis of {input_shape}"
                )
        if len({a % rank for a in given}) != len(given):
            raise ConfigError((*loc, "axis"), f"names an axis twice: {given}")
        self._dims = given
        return input_shape

    def forward(
        self, x: torch.Tensor, training: bool = False, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if mask is not None:
            # Keras's rule: masked positions get -1e9 before the softmax and 0 after it; the
            # mask must broadcast against the input from the right.
            dims = zip(reversed(mask.shape), reversed(x.shape), strict=False)
            if mask.dim() > x.dim() or any(m not in (1, i) for m, i in dims):
                raise DataError(
                    ("x",),
                    f"{self.name}: a mask of shape {tuple(mask.shape)} does not broadcast to "
                    f"inputs of shape {tuple(x.shape)} (Keras refuses it too)",
                )
            mask = mask.to(torch.bool)
            x = torch.where(mask, x, -1e9)
        if len(self._dims) == 1:
            out = F.softmax(x, dim=self._dims[0])
        else:
            out = torch.exp(x - torch.logsumexp(x, dim=self._dims, keepdim=True))
        return out if mask is None else torch.where(mask, out, 0.0)
