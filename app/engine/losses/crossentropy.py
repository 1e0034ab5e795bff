"""Keras 3's crossentropy losses on torch: BinaryCrossentropy, CategoricalCrossentropy and
SparseCategoricalCrossentropy.

Formulas follow Keras's torch backend op for op (probability clipping to [1e-7, 1 - 1e-7],
renormalisation of categorical probabilities, `squeeze_or_expand_to_same_rank`), so values match
Keras to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from app.engine.config.declared import Key, boolean, integer, must_be_null, number
from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.config.readers import get_int
from app.engine.losses.base import EPSILON, LOSSES, Loss
from app.engine.losses.reduction import (
    Shape,
    binary_crossentropy_elems,
    check_axis,
    check_same_shape,
    check_unit_interval,
    misfit,
    one_hot_hint,
    require_same_shape,
    same_rank_shapes,
)
from app.engine.scalars import scalar_like

Tensor = torch.Tensor


class CrossentropyLoss(Loss):
    """The keys Keras's crossentropy losses (and its focal ones) share."""

    from_logits = boolean(False)
    label_smoothing = number(0.0, min_value=0.0, max_value=1.0)
    axis = integer(-1)


@LOSSES.add("binary_crossentropy", "bce", "BCE")
class BinaryCrossentropy(CrossentropyLoss):
    default_name = "binary_crossentropy"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        require_same_shape(y_true, y_pred)
        if self.from_logits:
            elems = F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")
        else:
            clipped = torch.clip(y_pred, EPSILON, 1.0 - EPSILON)
            elems = binary_crossentropy_elems(clipped, y_true)
        return torch.mean(elems, dim=self.axis)

    def _check(self, y: np.ndarray, out_shape: Shape, loc: Loc) -> None:
        check_same_shape(y.shape, out_shape, loc)
        check_axis(self.axis, same_rank_shapes(y.shape, out_shape)[1], loc)
        check_unit_interval(y, loc, "binary crossentropy")


@LOSSES.add("categorical_crossentropy")
class CategoricalCrossentropy(CrossentropyLoss):
    default_name = "categorical_crossentropy"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        if self.label_smoothing:
            # Keras divides by a float32 tensor holding the class count: keep that rounding.
            classes = scalar_like(float(y_true.shape[-1]), y_pred)
            y_true = y_true * (1.0 - self.label_smoothing) + (self.label_smoothing / classes)
        require_same_shape(y_true, y_pred)
        if self.from_logits:
            log_prob = F.log_softmax(y_pred, dim=self.axis)
        else:
            probs = y_pred / torch.sum(y_pred, dim=self.axis, keepdim=True)
            log_prob = torch.log(torch.clip(probs, EPSILON, 1.0 - EPSILON))
        return -torch.sum(y_true * log_prob, dim=self.axis)

    def _check(self, y: np.ndarray, out_shape: Shape, loc: Loc) -> None:
        hint = one_hot_hint(y.shape, out_shape, "sparse_categorical_crossentropy")
        check_same_shape(y.shape, out_shape, loc, hint)
        check_axis(self.axis, same_rank_shapes(y.shape, out_shape)[1], loc)


def _read_last_axis(config: Mapping[str, Any], key: str, loc: Loc, default: int) -> int:
    if get_int(config, key, loc, default) != -1:
        raise ConfigError((*loc, key), "only axis -1 is supported yet")
    return -1


@LOSSES.add("sparse_categorical_crossentropy")
class SparseCategoricalCrossentropy(Loss):
    default_name = "sparse_categorical_crossentropy"
    from_logits = boolean(False)
    ignore_class = must_be_null("ignore_class is not supported yet", saved=True)
    # Keras accepts `axis` but leaves it out of its config.
    axis = Key[int](_read_last_axis, -1, saved=False)

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        target = y_true.to(torch.long)
        if target.dim() == y_pred.dim() and target.shape[-1] == 1:
            target = target.squeeze(-1)
        if tuple(target.shape) != tuple(y_pred.shape[:-1]):
            shapes = tuple(y_true.shape), tuple(y_pred.shape)
            raise misfit(*shapes, (), f"labels of shape {shapes[1][:-1]}")
        output = y_pred
        if output.dim() == 1:
            output, target = output.unsqueeze(0), target.unsqueeze(0)
        elif output.dim() > 2:
            # torch's cross entropy wants the class axis at position 1.
            output = output.movedim(-1, 1)
        if self.from_logits:
            result = F.cross_entropy(output, target, reduction="none")
        else:
            probs = output / torch.sum(output, dim=1, keepdim=True)
            log_prob = torch.log(torch.clip(probs, EPSILON, 1.0 - EPSILON))
            result = F.nll_loss(log_prob, target, reduction="none")
        return result.squeeze(0) if y_pred.dim() == 1 else result

    def _check(self, y: np.ndarray, out_shape: Shape, loc: Loc) -> None:
        ys, os = same_rank_shapes(y.shape, out_shape)
        if len(ys) == len(os) and ys and ys[-1] == 1:
            ys = ys[:-1]
        if not os or ys != os[:-1]:
            both = f"{out_shape[:-1]} or {(*out_shape[:-1], 1)}"
            raise misfit(y.shape, out_shape, loc, f"integer class labels of shape {both}")
        classes = out_shape[-1]
        if y.size and np.issubdtype(y.dtype, np.floating) and (y != np.floor(y)).any():
            raise DataError(loc, "sparse categorical labels must be integers, received fractions")
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise DataError(
                loc,
                f"sparse categorical labels must be class indices in [0, {classes}), received "
                f"values from {y.min()} to {y.max()}",
            )
