"""Keras 3's regression metrics on torch: MeanSquaredError, MeanAbsoluteError, RootMeanSquaredError,
MeanAbsolutePercentageError, MeanSquaredLogarithmicError, CosineSimilarity (positive: 1 is a perfect
match), LogCoshError (named "logcosh", as in Keras) and R2Score.

MAPE, MSLE and log-cosh are Keras's loss functions, so these metrics average the engine's losses'
`call` (`Float32LossMetric`); RMSE, CosineSimilarity and R2 are Keras's own metric code. Labels
and outputs are first brought to the same rank with `squeeze_or_expand_to_same_rank`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine import losses
from app.engine.config.declared import Key, integer
from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.config.readers import get_str
from app.engine.losses import reduction as loss_utils
from app.engine.losses.base import EPSILON as EPSILON
from app.engine.losses.regression import l2_normalize
from app.engine.metrics.base import METRICS, LossMetric, MeanMetricWrapper
from app.engine.metrics.state import StateMetric, as_float, weight_tensor
from app.engine.scalars import scalar_like

Tensor = torch.Tensor


@METRICS.add("mean_squared_error", "mse", "MSE")
class MeanSquaredError(LossMetric):
    default_name = "mean_squared_error"
    loss = losses.MeanSquaredError


@METRICS.add("mean_absolute_error", "mae", "MAE")
class MeanAbsoluteError(LossMetric):
    default_name = "mean_absolute_error"
    loss = losses.MeanAbsoluteError


def _aligned(y_true: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor]:
    y_pred = as_float(y_pred)
    return loss_utils.squeeze_or_expand_to_same_rank(y_true.to(y_pred.dtype), y_pred)


class Float32LossMetric(LossMetric):
    """A LossMetric whose outputs are cast to float32 first (and the labels to float32 with them),
    as these metrics always did."""

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return super().fn(y_true, as_float(y_pred))


@METRICS.add("root_mean_squared_error")
class RootMeanSquaredError(MeanMetricWrapper):
    """sqrt of the running weighted mean of squared errors (the root taken at `result`). Keras
    squares the errors itself, not through mean_squared_error: no mean over the last axis."""

    default_name = "root_mean_squared_error"
    direction = "down"
    uses_mask = False  # Keras's RMSE is a Mean of squared errors: it ignores output masks

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_true, y_pred = _aligned(y_true, y_pred)
        return torch.square(y_pred - y_true)

    def result(self) -> Tensor:
        return torch.sqrt(super().result())


@METRICS.add("mean_absolute_percentage_error", "mape", "MAPE")
class MeanAbsolutePercentageError(Float32LossMetric):
    default_name = "mean_absolute_percentage_error"
    loss = losses.MeanAbsolutePercentageError


@METRICS.add("mean_squared_logarithmic_error", "msle", "MSLE")
class MeanSquaredLogarithmicError(Float32LossMetric):
    default_name = "mean_squared_logarithmic_error"
    loss = losses.MeanSquaredLogarithmicError


@METRICS.add("cosine_similarity")
class CosineSimilarity(MeanMetricWrapper):
    """Mean cosine similarity along `axis` (Keras keeps `axis` out of its config). Keras's metric
    has its own function (the loss is the *negative* cosine); both normalise with `l2_normalize`."""

    default_name = "cosine_similarity"
    direction = "up"
    axis = integer(-1, saved=False)

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_true, y_pred = _aligned(y_true, y_pred)
        if y_pred.dim() == 0 or not -y_pred.dim() <= self.axis < y_pred.dim():
            raise DataError(("y_pred",), f"axis {self.axis} is out of range for {y_pred.shape}")
        y_pred = l2_normalize(y_pred, self.axis)
        y_true = l2_normalize(y_true, self.axis)
        return torch.sum(y_true * y_pred, dim=self.axis)


@METRICS.add("log_cosh_error")
class LogCoshError(Float32LossMetric):
    """Mean of log(cosh(error)); Keras names it "logcosh" (though the string "logcosh" is not
    one of its metric identifiers)."""

    default_name = "logcosh"
    loss = losses.LogCosh


_AGGREGATIONS = ("uniform_average", "variance_weighted_average")


def _read_aggregation(config: Mapping[str, Any], key: str, loc: Loc, default: str) -> str:
    if key in config and config[key] is None:
        raise ConfigError(
            (*loc, key),
            "None (one score per column) is not supported: the training log holds one "
            f"number per metric; use one of {list(_AGGREGATIONS)}",
        )
    aggregation: str = get_str(config, key, loc, default, choices=_AGGREGATIONS)
    return aggregation


@METRICS.add("r2_score")
class R2Score(StateMetric):
    """Coefficient of determination over all samples seen, per output column, then averaged
    (`uniform_average`) or weighted by the columns' variances; adjusted for `num_regressors`
    when there are enough values (Keras counts every label value, not every row). Inputs are
    (batch, columns). `class_aggregation=None` (a per-column vector) is not supported."""

    default_name = "r2_score"
    direction = "up"
    class_aggregation = Key[str](_read_aggregation, "uniform_average")
    num_regressors = integer(0, min_value=0)

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> None:
        with torch.no_grad():
            y_true, y_pred = _aligned(y_true.detach(), y_pred.detach())
            if y_true.dim() != 2 or y_pred.dim() != 2 or y_true.shape != y_pred.shape:
                raise DataError(
                    ("y_pred",),
                    "R2Score expects labels and outputs of shape (batch, columns), got "
                    f"{tuple(y_true.shape)} and {tuple(y_pred.shape)}",
                )
            cols = (y_pred.shape[-1],)
            shapes = {
                "sum": cols,
                "squared_sum": cols,
                "residual": cols,
                "count": cols,
                "num_samples": (),
            }
            state = self._state(y_pred.device, shapes)
            weight = weight_tensor(sample_weight, y_pred)
            if weight is None:
                weight = scalar_like(1.0, y_pred)
            if weight.dim() == 1:
                weight = weight.unsqueeze(1)
            try:
                weight = torch.broadcast_to(weight, y_true.shape)
            except RuntimeError:
                raise DataError(
                    ("sample_weight",),
                    f"shape {tuple(weight.shape)} does not fit labels {tuple(y_true.shape)}",
                ) from None
            weighted = y_true * weight
            state["sum"].add_(torch.sum(weighted, dim=0))
            state["squared_sum"].add_(torch.sum(y_true * weighted, dim=0))
            state["residual"].add_(torch.sum((y_true - y_pred) ** 2 * weight, dim=0))
            state["count"].add_(torch.sum(weight, dim=0))
            state["num_samples"].add_(float(y_true.numel()))

    def _result(self, state: dict[str, Tensor]) -> Tensor:
        mean = state["sum"] / state["count"]
        total = state["squared_sum"] - state["sum"] * mean
        raw = 1 - (state["residual"] / total)
        raw = torch.where(torch.isinf(raw), scalar_like(0.0, raw), raw)
        if self.class_aggregation == "uniform_average":
            score = torch.mean(raw)
        else:
            score = torch.sum(total * raw) / torch.sum(total)
        if self.num_regressors == 0:
            return score
        n = state["num_samples"]
        p = scalar_like(float(self.num_regressors), n)
        adjusted = 1.0 - ((1.0 - score) * (n - 1.0)) / ((n - p) - 1.0)
        # Keras falls back to the plain score (with a warning) unless p < n - 1.
        return torch.where(p < n - 1.0, adjusted, score)
