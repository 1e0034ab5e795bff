"""Keras 3's overlap losses for segmentation: Dice and Tversky.

Their `axis` is None (sum over *every* element: one value for the whole batch, which sample
weights then scale by their mean), an integer or a list of integers; the loss value keeps the
axes not summed. Op order follows Keras: `2·I / (Σy + Σp + ε)` and
`I / (I + alpha·FN + beta·FP + ε)`, where (Keras's naming) alpha weighs Σ(1 - p)·y.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from app.engine.config.declared import Key, number
from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.config.readers import get_int
from app.engine.losses.base import EPSILON, LOSSES, Loss
from app.engine.losses.reduction import Shape, check_same_shape, same_rank_shapes

Tensor = torch.Tensor
Axis = int | list[int] | tuple[int, ...] | None


def _sum(x: Tensor, axis: Axis) -> Tensor:
    return torch.sum(x) if axis is None else torch.sum(x, dim=axis)


def _read_axis(config: Mapping[str, Any], key: str, loc: Loc, default: None) -> Axis:
    """None, an integer, or a non-empty list of integers (a tuple stays a tuple)."""
    axis = config.get(key)
    if not isinstance(axis, list | tuple):
        value: int | None = get_int(config, key, loc, None, allow_none=True)
        return value
    if not axis:
        raise ConfigError((*loc, key), "must be null, an integer or a non-empty list")
    items = {str(i): a for i, a in enumerate(axis)}
    ints = [get_int(items, str(i), (*loc, key)) for i in range(len(axis))]
    return tuple(ints) if isinstance(axis, tuple) else ints


def _axis() -> Key[Axis]:
    """The axes summed over (None: all of them); Keras writes it last."""
    return Key(_read_axis, None)


def check_sum_axes(axis: Axis, out_shape: Shape, loc: Loc) -> None:
    if axis is None:
        return
    rank = len(out_shape)
    axes = [axis] if isinstance(axis, int) else list(axis)
    if any(not -rank <= a < rank for a in axes):
        raise DataError(loc, f"the loss's axis {axis} is out of range for outputs {out_shape}")
    if len({a % rank for a in axes}) != len(axes):
        raise DataError(loc, f"the loss's axis {axis} repeats an axis of outputs {out_shape}")


class _Overlap(Loss):
    """Each subclass declares `axis` last, in Keras's order."""

    def _check(self, y: np.ndarray, out_shape: Shape, loc: Loc) -> None:
        axis: Axis = self.__dict__["axis"]
        check_same_shape(y.shape, out_shape, loc)
        check_sum_axes(axis, same_rank_shapes(y.shape, out_shape)[1], loc)


@LOSSES.add("dice")
class Dice(_Overlap):
    """1 - 2·Σ(y·p) / (Σy + Σp + ε) over `axis`."""

    default_name = "dice"
    axis = _axis()

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        intersection = _sum(y_true * y_pred, self.axis)
        union = _sum(y_true, self.axis) + _sum(y_pred, self.axis) + EPSILON
        return 1 - torch.divide(2.0 * intersection, union)


@LOSSES.add("tversky")
class Tversky(_Overlap):
    """1 - TP / (TP + alpha·Σ((1 - p)·y) + beta·Σ(p·(1 - y)) + ε) over `axis`."""

    default_name = "tversky"
    alpha = number(0.5, min_value=0.0)
    beta = number(0.5, min_value=0.0)
    axis = _axis()

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        intersection = _sum(y_true * y_pred, self.axis)
        fp = _sum((1 - y_pred) * y_true, self.axis)
        fn = _sum(y_pred * (1 - y_true), self.axis)
        denominator = intersection + fp * self.alpha + fn * self.beta + EPSILON
        return 1 - torch.divide(intersection, denominator)
