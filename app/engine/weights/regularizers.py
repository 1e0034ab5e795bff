"""Keras's weight and activity regularizers: the REGULARIZERS registry and `get`.

A regularizer maps a tensor to a scalar penalty that is added to the loss. Each computes on the
tensor's own device (no host reads) in the order Keras's own code does, so the penalties agree
to the last float32 bit. Names are those Keras 3.15's `regularizers.get` accepts: the class
names and their snake-case forms (`l1l2`, not `l1_l2`: Keras refuses that string). A bare name
builds the class with its defaults, so `"l2"` is `L2(0.01)` but `"l1l2"` is `L1L2(0, 0)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from app.engine.config.declared import Key, number, string
from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_float
from app.engine.config.registry import Registry
from app.engine.weights.options import WeightOption, get_option

MODULE = "keras.regularizers"


def _read_factor(config: Mapping[str, Any], key: str, loc: Loc, default: float) -> float:
    if config.get(key, 0.0) is None:
        return default
    return float(get_float(config, key, loc, default, min_value=0.0))


def factor(default: float) -> Key[float]:
    """A non-negative finite factor; null means `default` (Keras's rule for l1/l2)."""
    return Key(_read_factor, default)


def _float32(value: float) -> float:
    """Keras keeps some factors as float32 tensors: they compute and serialize rounded."""
    return float(np.float32(value))


class Regularizer(WeightOption):
    """A penalty on a tensor, built from a Keras config."""

    module = MODULE

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


REGULARIZERS: Registry[Regularizer] = Registry("regularizer")


@REGULARIZERS.add("l1")
class L1(Regularizer):
    """`l1 * sum(|x|)`; Keras holds l1 as a float32 tensor (default 0.01)."""

    l1 = factor(0.01)

    def __post_init__(self) -> None:
        self.l1 = _float32(self.l1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sum(torch.abs(x)) * self.l1


@REGULARIZERS.add("l2")
class L2(Regularizer):
    """`l2 * sum(x²)`, with no 1/2 factor (default 0.01)."""

    l2 = factor(0.01)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sum(torch.square(x)) * self.l2


@REGULARIZERS.add("l1l2")
class L1L2(Regularizer):
    """`l1 * sum(|x|) + l2 * sum(x²)`, each term only when its factor is non-zero (both
    default to 0, and null means 0)."""

    l1 = factor(0.0)
    l2 = factor(0.0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros((), dtype=x.dtype, device=x.device)
        if self.l1 != 0.0:
            total = total + torch.sum(torch.abs(x)) * self.l1
        if self.l2 != 0.0:
            total = total + torch.sum(torch.square(x)) * self.l2
        return total


@REGULARIZERS.add("orthogonal_regularizer")
class OrthogonalRegularizer(Regularizer):
    """`factor / 2` times the mean absolute cosine between distinct rows (or columns) of a
    matrix. Keras normalizes with `x * min(rsqrt(sum(x²)), 1e7)`, and takes rank-2 weights only;
    with fewer than two rows (columns) its mean is 0/0, so such a weight is refused here."""

    factor = number(0.01, min_value=0.0)
    mode = string("rows", choices=["rows", "columns"])

    def __post_init__(self) -> None:
        self.factor = _float32(self.factor)

    def check_weight(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 2:
            raise ConfigError(self.loc, f"takes rank-2 weights only, got a weight of shape {shape}")
        if shape[0 if self.mode == "rows" else 1] < 2:
            raise ConfigError(
                self.loc, f"needs at least two {self.mode} to compare, got a weight of {shape}"
            )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        axis = 1 if self.mode == "rows" else 0
        inv_norm = torch.rsqrt(torch.sum(torch.square(x), dim=axis, keepdim=True))
        unit = x * torch.clamp_max(inv_norm, 1e7)
        product = unit @ unit.T if axis == 1 else unit.T @ unit
        size = product.shape[0]
        off_diagonal = product * (1.0 - torch.eye(size, dtype=x.dtype, device=x.device))
        pairs = size * (size - 1.0) / 2.0
        return torch.sum(torch.abs(off_diagonal)) * (self.factor * 0.5) / pairs


def get(identifier: Any, loc: Loc) -> Regularizer | None:
    """A regularizer from a name, a `{class_name, config}` object (Keras's own module only), or
    None (no regularizer)."""
    return get_option(REGULARIZERS, identifier, loc)


__all__ = ["L1", "L1L2", "L2", "REGULARIZERS", "OrthogonalRegularizer", "Regularizer", "get"]
