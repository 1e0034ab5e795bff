"""Keras 3's PearsonCorrelation and ConcordanceCorrelation metrics on torch: each sample's
correlation between labels and outputs along `axis`, averaged over samples (weighted, as any
Keras MeanMetricWrapper). Variances and standard deviations are population ones (no Bessel
correction).

Keras's concordance centres the labels on the *outputs'* mean in the covariance term; this is
kept, so the numbers are Keras's.
"""

from __future__ import annotations

import torch

from app.engine.config.declared import integer
from app.engine.config.errors import DataError
from app.engine.losses import reduction as loss_utils
from app.engine.metrics.base import METRICS, MeanMetricWrapper
from app.engine.metrics.state import as_float

Tensor = torch.Tensor
EPSILON = 1e-7


class _Correlation(MeanMetricWrapper):
    direction = "up"
    axis = integer(-1)

    def _aligned(self, y_true: Tensor, y_pred: Tensor) -> tuple[Tensor, Tensor]:
        y_pred = as_float(y_pred)
        y_true, y_pred = loss_utils.squeeze_or_expand_to_same_rank(y_true.to(y_pred.dtype), y_pred)
        if y_pred.dim() == 0 or not -y_pred.dim() <= self.axis < y_pred.dim():
            raise DataError(
                ("y_pred",), f"axis {self.axis} is out of range for {tuple(y_pred.shape)}"
            )
        if y_true.shape != y_pred.shape:
            raise DataError(
                ("y_true",),
                f"labels {tuple(y_true.shape)} do not fit outputs {tuple(y_pred.shape)}",
            )
        return y_true, y_pred


@METRICS.add("pearson_correlation")
class PearsonCorrelation(_Correlation):
    default_name = "pearson_correlation"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_true, y_pred = self._aligned(y_true, y_pred)
        a = self.axis
        t = y_true - torch.mean(y_true, dim=a, keepdim=True)
        p = y_pred - torch.mean(y_pred, dim=a, keepdim=True)
        t = t / torch.std(t, dim=a, keepdim=True, unbiased=False)
        p = p / torch.std(p, dim=a, keepdim=True, unbiased=False)
        return torch.mean(t * p, dim=a)


@METRICS.add("concordance_correlation")
class ConcordanceCorrelation(_Correlation):
    default_name = "concordance_correlation"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_true, y_pred = self._aligned(y_true, y_pred)
        a = self.axis
        true_mean = torch.mean(y_true, dim=a, keepdim=True)
        pred_mean = torch.mean(y_pred, dim=a, keepdim=True)
        true_var = torch.var(y_true - true_mean, dim=a, keepdim=True, correction=0)
        pred_var = torch.var(y_pred - pred_mean, dim=a, keepdim=True, correction=0)
        covariance = (y_true - pred_mean) * (y_pred - pred_mean)
        norm = true_var + pred_var + torch.square(true_mean - pred_mean)
        return torch.mean(2 * covariance / (norm + EPSILON), dim=a)
