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

from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.config.readers import get_bool, get_float, get_int
from app.engine.losses.base import EPSILON, LOSSES, Loss
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


@LOSSES.register("KLDivergence", "kl_divergence", "kld", "KLD")
class KLDivergence(Loss):
    """Σ y·log(y/p) over the last axis, both clipped to [ε, 1]."""

    default_name = "kl_divergence"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        low, high = scalar_like(EPSILON, y_pred), scalar_like(1.0, y_pred)
        y_true = torch.clip(y_true, low, high)
        y_pred = torch.clip(y_pred, low, high)
        return torch.sum(y_true * torch.log(y_true / y_pred), dim=-1)


@LOSSES.register("Poisson", "poisson")
class Poisson(Loss):
    """mean(p - y·log(p + ε)) over the last axis."""

    default_name = "poisson"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        eps = scalar_like(EPSILON, y_pred)
        return torch.mean(y_pred - y_true * torch.log(y_pred + eps), dim=-1)


def _focal_args(config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
    return {
        "from_logits": get_bool(config, "from_logits", loc, False),
        "label_smoothing": get_float(
            config, "label_smoothing", loc, 0.0, min_value=0.0, max_value=1.0
        ),
        "axis": get_int(config, "axis", loc, -1),
        "gamma": get_float(config, "gamma", loc, 2.0, min_value=0.0),
    }


@LOSSES.register("BinaryFocalCrossentropy", "binary_focal_crossentropy")
class BinaryFocalCrossentropy(Loss):
    default_name = "binary_focal_crossentropy"
    hyperparameters = {
        "from_logits": False, "label_smoothing": 0.0, "axis": -1,
        "apply_class_balancing": False, "alpha": 0.25, "gamma": 2.0,
    }  # fmt: skip
    from_logits: bool
    label_smoothing: float
    axis: int
    apply_class_balancing: bool
    alpha: float
    gamma: float

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            **_focal_args(config, loc),
            "apply_class_balancing": get_bool(config, "apply_class_balancing", loc, False),
            "alpha": get_float(config, "alpha", loc, 0.25, min_value=0.0, max_value=1.0),
        }

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


@LOSSES.register("CategoricalFocalCrossentropy", "categorical_focal_crossentropy")
class CategoricalFocalCrossentropy(Loss):
    """Σ alpha·(1 - p)^gamma·(-y·log p) over the class axis. `alpha` is a number or, as in
    Keras, a list with one weight per class (it then lines up with the *last* axis)."""

    default_name = "categorical_focal_crossentropy"
    hyperparameters = {
        "from_logits": False, "label_smoothing": 0.0, "axis": -1, "alpha": 0.25, "gamma": 2.0,
    }  # fmt: skip
    from_logits: bool
    label_smoothing: float
    axis: int
    alpha: float | list[float]
    gamma: float

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        alpha = config.get("alpha", 0.25)
        if isinstance(alpha, list | tuple):
            if not alpha:
                raise ConfigError((*loc, "alpha"), "must be a number or a non-empty list")
            items = {str(i): a for i, a in enumerate(alpha)}
            alpha = [get_float(items, str(i), (*loc, "alpha")) for i in range(len(alpha))]
        else:
            alpha = get_float(config, "alpha", loc, 0.25)
        return {**_focal_args(config, loc), "alpha": alpha}

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
