"""Keras 3's other probabilistic losses: KLDivergence, Poisson, BinaryFocalCrossentropy and
CategoricalFocalCrossentropy.

As in Keras's torch backend: KL clips both inputs to [ε, 1]; Poisson adds ε inside the log; the
binary focal loss applies the sigmoid to logits and then takes the *clipped* probability
crossentropy (not the from-logits formula), with the focal factor computed from the unclipped
probabilities; the categorical focal loss applies the softmax to logits, renormalises, clips to
[ε, 1 - ε] and weights each class term by alpha·(1 - p)^gamma. Constants Keras makes float32 tensors
(ε, gamma, alpha, the class count) are float32 device tensors here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from app.engine.config.declared import Key, boolean, number
from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.config.readers import get_float
from app.engine.losses.base import EPSILON, LOSSES, Loss
from app.engine.losses.crossentropy import CrossentropyLoss
from app.engine.losses.reduction import (
    Shape,
    binary_crossentropy_elems,
    check_axis,
    check_same_shape,
    check_unit_interval,
    one_hot_hint,
    require_same_shape,
    same_rank_shapes,
)
from app.engine.scalars import scalar_like

Tensor = torch.Tensor


@LOSSES.add("kl_divergence", "kld", "KLD")
class KLDivergence(Loss):
    """Σ y·log(y/p) over the last axis, both clipped to [ε, 1]."""

    default_name = "kl_divergence"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        low, high = scalar_like(EPSILON, y_pred), scalar_like(1.0, y_pred)
        y_true = torch.clip(y_true, low, high)
        y_pred = torch.clip(y_pred, low, high)
        return torch.sum(y_true * torch.log(y_true / y_pred), dim=-1)


@LOSSES.add("poisson")
class Poisson(Loss):
    """mean(p - y·log(p + ε)) over the last axis."""

    default_name = "poisson"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        eps = scalar_like(EPSILON, y_pred)
        return torch.mean(y_pred - y_true * torch.log(y_pred + eps), dim=-1)


def _gamma() -> Key[float]:
    return number(2.0, min_value=0.0)


@LOSSES.add("binary_focal_crossentropy")
class BinaryFocalCrossentropy(CrossentropyLoss):
    default_name = "binary_focal_crossentropy"
    apply_class_balancing = boolean(False)
    alpha = number(0.25, min_value=0.0, max_value=1.0)
    gamma = _gamma()

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            y_pred = torch.sigmoid(y_pred)
        require_same_shape(y_true, y_pred)
        clipped = torch.clip(y_pred, EPSILON, 1.0 - EPSILON)
        bce = binary_crossentropy_elems(clipped, y_true)
        p_t = y_true * y_pred + (1 - y_true) * (1 - y_pred)
        focal_bce = torch.pow(1.0 - p_t, scalar_like(self.gamma, y_pred)) * bce
        if self.apply_class_balancing:
            weight = y_true * self.alpha + (1 - y_true) * (1 - self.alpha)
            focal_bce = weight * focal_bce
        return torch.mean(focal_bce, dim=self.axis)

    def _check(self, y: np.ndarray, out_shape: Shape, loc: Loc) -> None:
        check_same_shape(y.shape, out_shape, loc)
        check_axis(self.axis, same_rank_shapes(y.shape, out_shape)[1], loc)
        check_unit_interval(y, loc, "binary focal crossentropy")


def _read_class_weights(
    config: Mapping[str, Any], key: str, loc: Loc, default: float
) -> float | list[float]:
    """A number, or a non-empty list of them (one per class)."""
    alpha = config.get(key, default)
    if not isinstance(alpha, list | tuple):
        return float(get_float(config, key, loc, default))
    if not alpha:
        raise ConfigError((*loc, key), "must be a number or a non-empty list")
    items = {str(i): a for i, a in enumerate(alpha)}
    return [get_float(items, str(i), (*loc, key)) for i in range(len(alpha))]


@LOSSES.add("categorical_focal_crossentropy")
class CategoricalFocalCrossentropy(CrossentropyLoss):
    """Σ alpha·(1 - p)^gamma·(-y·log p) over the class axis. `alpha` is a number or, as in
    Keras, a list with one weight per class (it then lines up with the *last* axis)."""

    default_name = "categorical_focal_crossentropy"
    alpha = Key[float | list[float]](_read_class_weights, 0.25)
    gamma = _gamma()

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        if self.label_smoothing:
            classes = scalar_like(float(y_true.shape[-1]), y_pred)
            y_true = y_true * (1.0 - self.label_smoothing) + (self.label_smoothing / classes)
        if self.from_logits:
            y_pred = F.softmax(y_pred, dim=self.axis)
        output = y_pred / torch.sum(y_pred, dim=self.axis, keepdim=True)
        output = torch.clip(output, EPSILON, 1.0 - EPSILON)
        cce = -y_true * torch.log(output)
        modulating = torch.pow(1.0 - output, scalar_like(self.gamma, y_pred))
        if isinstance(self.alpha, list):
            alpha = torch.tensor(self.alpha, dtype=y_pred.dtype, device=y_pred.device)
        else:
            alpha = scalar_like(self.alpha, y_pred)
        return torch.sum(modulating * alpha * cce, dim=self.axis)

    def _check(self, y: np.ndarray, out_shape: Shape, loc: Loc) -> None:
        hint = one_hot_hint(y.shape, out_shape)
        check_same_shape(y.shape, out_shape, loc, hint)
        check_axis(self.axis, same_rank_shapes(y.shape, out_shape)[1], loc)
        if isinstance(self.alpha, list) and len(self.alpha) not in (1, out_shape[-1]):
            raise DataError(
                loc,
                f"the loss's alpha has {len(self.alpha)} class weights; expected one or "
                f"{out_shape[-1]} (the last axis of outputs {out_shape})",
            )
