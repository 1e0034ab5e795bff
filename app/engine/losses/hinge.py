"""Keras 3's hinge losses: Hinge, SquaredHinge and CategoricalHinge.

Hinge and SquaredHinge map labels to {-1, 1} (2y - 1) when *every* label of the batch is 0 or 1,
as Keras's `convert_binary_labels_to_hinge` does; the choice is made per batch, on the device
(`torch.where`, no sync). The maxima use `torch.maximum` against a float32 zero, as Keras's ops
do, so gradients at the hinge's corner match too.
"""

from __future__ import annotations

import numpy as np
import torch

from app.engine.config.errors import Loc
from app.engine.losses.base import LOSSES, Loss
from app.engine.losses.reduction import Shape, check_same_shape, one_hot_hint
from app.engine.scalars import scalar_like

Tensor = torch.Tensor


def hinge_labels(y_true: Tensor) -> Tensor:
    """2y - 1 if all labels are 0 or 1, else the labels unchanged."""
    is_binary = torch.all(torch.logical_or(y_true == 0, y_true == 1))
    return torch.where(is_binary, 2.0 * y_true - 1.0, y_true)


@LOSSES.add("hinge")
class Hinge(Loss):
    """mean(max(1 - y·p, 0)) over the last axis, labels in {-1, 1} (or {0, 1}, mapped)."""

    default_name = "hinge"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        margin = 1.0 - hinge_labels(y_true) * y_pred
        return torch.mean(torch.maximum(margin, scalar_like(0.0, y_pred)), dim=-1)


@LOSSES.add("squared_hinge")
class SquaredHinge(Loss):
    """mean(max(1 - y·p, 0)²) over the last axis, labels as for Hinge."""

    default_name = "squared_hinge"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        margin = 1.0 - hinge_labels(y_true) * y_pred
        return torch.mean(torch.square(torch.maximum(margin, scalar_like(0.0, y_pred))), dim=-1)


@LOSSES.add("categorical_hinge")
class CategoricalHinge(Loss):
    """max(max((1 - y)·p) - Σ y·p + 1, 0) over the last axis, for one-hot labels."""

    default_name = "categorical_hinge"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        pos = torch.sum(y_true * y_pred, dim=-1)
        neg = torch.amax((1.0 - y_true) * y_pred, dim=-1)
        return torch.maximum(neg - pos + 1.0, scalar_like(0.0, y_pred))

    def _check(self, y: np.ndarray, out_shape: Shape, loc: Loc) -> None:
        check_same_shape(y.shape, out_shape, loc, one_hot_hint(y.shape, out_shape))
