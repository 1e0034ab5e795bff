"""Keras 3's regression losses: MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
MeanSquaredLogarithmicError, CosineSimilarity (the *negative* cosine), Huber and LogCosh.

Each follows Keras's function op for op on its torch backend: constants that Keras turns into
float32 tensors (epsilon, Huber's delta and ½, log 2, the 1/ε cap of the L2 normalisation) are
float32 device tensors here too, and `torch.maximum`/`torch.minimum` stand where Keras's ops do
(their gradients at ties differ from `clamp`'s). Keras leaves Huber's `delta` and
CosineSimilarity's `axis` out of its configs; so does `get_config` here.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from app.engine.config.declared import integer, number
from app.engine.config.errors import Loc
from app.engine.losses.base import EPSILON, LOSSES, Loss
from app.engine.losses.reduction import Shape, check_axis, check_same_shape, same_rank_shapes
from app.engine.scalars import scalar_like

Tensor = torch.Tensor


@LOSSES.add("mean_squared_error", "mse", "MSE")
class MeanSquaredError(Loss):
    default_name = "mean_squared_error"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return torch.mean(torch.square(y_true - y_pred), dim=-1)


@LOSSES.add("mean_absolute_error", "mae", "MAE")
class MeanAbsoluteError(Loss):
    default_name = "mean_absolute_error"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return torch.mean(torch.abs(y_true - y_pred), dim=-1)


_LOG2 = float(torch.log(torch.tensor(2.0)))  # Keras's log 2, computed in float32


@LOSSES.add("mean_absolute_percentage_error", "mape", "MAPE")
class MeanAbsolutePercentageError(Loss):
    default_name = "mean_absolute_percentage_error"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        floor = torch.maximum(torch.abs(y_true), scalar_like(EPSILON, y_pred))
        return 100.0 * torch.mean(torch.abs((y_true - y_pred) / floor), dim=-1)


@LOSSES.add("mean_squared_logarithmic_error", "msle", "MSLE")
class MeanSquaredLogarithmicError(Loss):
    default_name = "mean_squared_logarithmic_error"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        eps = scalar_like(EPSILON, y_pred)
        first_log = torch.log(torch.maximum(y_pred, eps) + 1.0)
        second_log = torch.log(torch.maximum(y_true, eps) + 1.0)
        return torch.mean(torch.square(first_log - second_log), dim=-1)


def l2_normalize(x: Tensor, axis: int) -> Tensor:
    """Keras's `ops.normalize(x, axis)` (order 2): x · min(rsqrt(Σx²), 1/ε)."""
    inv_norm = torch.rsqrt(torch.sum(torch.square(x), dim=axis, keepdim=True))
    return x * torch.minimum(inv_norm, scalar_like(1.0 / EPSILON, x))


@LOSSES.add("cosine_similarity")
class CosineSimilarity(Loss):
    """-Σ normalize(y)·normalize(p) along `axis`: -1 for identical directions."""

    default_name = "cosine_similarity"
    axis = integer(-1, saved=False)

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_pred = l2_normalize(y_pred, self.axis)
        y_true = l2_normalize(y_true, self.axis)
        return -torch.sum(y_true * y_pred, dim=self.axis)

    def _check(self, y: np.ndarray, out_shape: Shape, loc: Loc) -> None:
        check_same_shape(y.shape, out_shape, loc)
        check_axis(self.axis, same_rank_shapes(y.shape, out_shape)[1], loc)


@LOSSES.add("huber")
class Huber(Loss):
    """½e² where |e| ≤ δ, else δ|e| - ½δ², averaged over the last axis (e = p - y). Keras names
    it "huber_loss" but does not accept that string as a loss."""

    default_name = "huber_loss"
    delta = number(1.0, min_value=0.0, saved=False)

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        delta = scalar_like(self.delta, y_pred)
        half = scalar_like(0.5, y_pred)
        error = y_pred - y_true
        abs_error = torch.abs(error)
        linear = delta * abs_error - half * torch.square(delta)
        return torch.mean(torch.where(abs_error <= delta, half * torch.square(error), linear), -1)


@LOSSES.add("log_cosh")
class LogCosh(Loss):
    """log(cosh(p - y)) as x + softplus(-2x) - log 2, averaged over the last axis."""

    default_name = "log_cosh"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        x = y_pred - y_true
        log2 = scalar_like(_LOG2, y_pred)
        return torch.mean(x + F.softplus(x * -2.0) - log2, dim=-1)
