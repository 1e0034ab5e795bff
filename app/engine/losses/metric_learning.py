"""Keras 3's Circle loss (Sun et al., 2020): integer class labels against embeddings.

Each sample is scored against every other sample of the batch, so one sample's value depends on
the whole batch. Keras expects the embeddings already L2-normalised (a UnitNormalization layer)
and does not normalise them itself, so neither do we: the similarity is the plain dot product.
Op order and the zero floors follow Keras's torch backend, so values and gradients match it.

Keras marks the values that are not > 0 (a sample with no positive or no negative in its batch
gets softplus(-inf) = 0) with a Keras mask, so the "sum_over_batch_size" and "mean" reductions
average over the remaining samples only; `Circle.__call__` does the same.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from app.engine.config.declared import boolean, number
from app.engine.config.errors import DataError, Loc
from app.engine.losses.base import LOSSES, Loss
from app.engine.losses.reduction import (
    Shape,
    apply_mask,
    misfit,
    reduce_weighted_values,
)
from app.engine.scalars import scalar_like

Tensor = torch.Tensor

_EXPECTED = "integer class labels (N,) or (N, 1) against embeddings (N, D)"


def _fits(y_shape: Shape, out_shape: Shape) -> bool:
    n = out_shape[0] if out_shape else None
    return len(out_shape) == 2 and y_shape in ((n,), (n, 1))


def _labels_column(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """Labels as an (N, 1) int32 column; Keras truncates float labels to int32."""
    shapes = tuple(y_true.shape), tuple(y_pred.shape)
    if not _fits(*shapes):
        raise misfit(*shapes, (), _EXPECTED)
    return y_true.to(torch.int32).reshape(-1, 1)


@LOSSES.add("circle")
class Circle(Loss):
    """softplus(logsumexp of the weighted positive terms + that of the negative terms), per row
    of the batch's similarity matrix."""

    default_name = "circle"
    gamma = number(80.0, min_value=0.0)
    margin = number(0.4)
    remove_diagonal = boolean(True)

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        labels = _labels_column(y_true, y_pred)
        zero = scalar_like(0.0, y_pred)
        distances = torch.maximum(1 - torch.matmul(y_pred, y_pred.T), zero)
        positive = labels == labels.T
        negative = torch.logical_not(positive)
        if self.remove_diagonal:
            n = labels.shape[0]
            eye = torch.eye(n, n, dtype=torch.bool, device=labels.device)
            positive = torch.logical_and(positive, ~eye)
        pos_float, neg_float = positive.to(distances.dtype), negative.to(distances.dtype)
        # Keras multiplies by the 0/1 masks before the zero floor, then drops the masked terms
        # with -inf; the same order keeps the gradients equal at the floor's ties.
        pos_weights = torch.maximum((self.margin + distances) * pos_float, zero)
        neg_weights = torch.maximum(((1 + self.margin) - distances) * neg_float, zero)
        pos_terms = -1 * self.gamma * pos_weights * (self.margin - distances)
        neg_terms = self.gamma * neg_weights * ((1 - self.margin) - distances)
        minus_inf = scalar_like(float("-inf"), distances)
        p_loss = torch.logsumexp(torch.where(positive, pos_terms, minus_inf), dim=1)
        n_loss = torch.logsumexp(torch.where(negative, neg_terms, minus_inf), dim=1)
        return F.softplus(p_loss + n_loss)

    def __call__(
        self,
        y_true: Tensor,
        y_pred: Tensor,
        sample_weight: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        values = self.call(y_true.to(torch.float32), y_pred.to(torch.float32))
        # Keras's own mask on the values, and-ed with the outputs' mask when there is one.
        keep = values > 0
        if mask is not None:
            keep = mask.to(device=values.device, dtype=torch.bool) & keep
        weights = apply_mask(sample_weight, keep, self.reduction, values)
        return reduce_weighted_values(values, weights, self.reduction)

    def _check(self, y: np.ndarray, out_shape: Shape, loc: Loc) -> None:
        if not _fits(y.shape, out_shape):
            raise misfit(y.shape, out_shape, loc, _EXPECTED)
        if y.size and np.issubdtype(y.dtype, np.floating) and (y != np.floor(y)).any():
            raise DataError(loc, "circle loss labels must be integer class ids, received fractions")
        # Keras reads labels as float32 before its int32 cast: beyond 2**24 ids would merge.
        if y.size and np.abs(y).max() > 2**24:
            raise DataError(
                loc, f"circle loss labels must lie in [-2**24, 2**24], received {np.abs(y).max()}"
            )
