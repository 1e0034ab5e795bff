"""Keras 3's AUC metric on torch: TP/FP/TN/FN at `num_thresholds` thresholds (or the given ones
with -epsilon and 1 + epsilon added), then a Riemann sum of the ROC, PR or PR-gain curve, or, for
PR with interpolation, Davis and Goadrich's interpolation (Keras's `interpolate_pr_auc`).

An unnamed AUC is named "auc" every time (Keras numbers them per process: auc, auc_1, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.declared import Key, boolean, integer, integer_or_none
from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.config.readers import get_str
from app.engine.losses import reduction as loss_utils
from app.engine.metrics.base import METRICS
from app.engine.metrics.confusion import (
    _prepare,
    confusion_counts,
    evenly_spaced,
    threshold_tensor,
)
from app.engine.metrics.state import MAX_LABELS, MAX_THRESHOLDS, StateMetric, get_thresholds
from app.engine.scalars import scalar_like

Tensor = torch.Tensor
EPSILON = 1e-7
# Keras's curves and summation methods, each also accepted in its other case.
_CURVES = {name: curve for curve in ("ROC", "PR", "PRGAIN") for name in (curve, curve.lower())}
_SUMMATIONS = {
    name: method
    for method in ("interpolation", "majoring", "minoring")
    for name in (method, method.capitalize())
}


def _one_of(names: Mapping[str, str], default: str) -> Key[str]:
    """A string among `names`, kept as the name it stands for."""

    def read(config: Mapping[str, Any], key: str, loc: Loc, default: str) -> str:
        return names[get_str(config, key, loc, default, choices=list(names))]

    return Key(read, default)


def _read_label_weights(
    config: Mapping[str, Any], key: str, loc: Loc, default: None
) -> list[float] | None:
    weights = config.get(key)
    if weights is None:
        return None
    if not isinstance(weights, list) or not all(
        isinstance(w, int | float) and not isinstance(w, bool) for w in weights
    ):
        raise ConfigError((*loc, key), "must be a list of numbers")
    return [float(w) for w in weights]


def _read_thresholds(config: Mapping[str, Any], key: str, loc: Loc, default: None) -> Any:
    thresholds = get_thresholds(config, key, loc, single=False, in_unit=False)
    return [thresholds] if isinstance(thresholds, int | float) else thresholds


@METRICS.add("auc")
class AUC(StateMetric):
    """Given `thresholds` replace `num_thresholds` evenly spaced ones (and set it: their number
    plus the two ends); Keras writes them back, sorted, only when they were given."""

    default_name = "auc"
    direction = "up"
    num_thresholds = integer(200, min_value=2, max_value=MAX_THRESHOLDS)
    curve = _one_of(_CURVES, "ROC")
    summation_method = _one_of(_SUMMATIONS, "interpolation")
    multi_label = boolean(False)
    num_labels = integer_or_none(None, min_value=1, max_value=MAX_LABELS)
    label_weights = Key[list[float] | None](_read_label_weights, None)
    from_logits = boolean(False)
    thresholds = Key[list[float] | None](_read_thresholds, None)
    written_when_set = ("thresholds",)

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        if values["num_labels"] and not values["multi_label"]:
            raise ConfigError((*loc, "num_labels"), "is needed only when multi_label is true")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.thresholds is not None:
            inner = sorted(float(t) for t in self.thresholds)
            self.thresholds, self.num_thresholds = inner, len(inner) + 2
            self._evenly = evenly_spaced([0.0, *inner, 1.0])
        else:
            n = self.num_thresholds
            inner = [(i + 1) * 1.0 / (n - 1) for i in range(n - 2)]
            self._evenly = True
        self._thresholds = [0.0 - EPSILON, *inner, 1.0 + EPSILON]

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> None:
        with torch.no_grad():
            y_pred = y_pred.detach()
            if self.from_logits:
                y_pred = torch.sigmoid(y_pred.to(torch.float32))
            y_true, y_pred, weight = _prepare(y_true, y_pred, sample_weight, None, None)
            shape: tuple[int, ...] = (self.num_thresholds,)
            if self.multi_label:
                if y_pred.dim() != 2:
                    raise DataError(
                        ("y_pred",),
                        "AUC with multi_label needs outputs of shape "
                        f"(batch, labels), got {tuple(y_pred.shape)}",
                    )
                shape = (self.num_thresholds, y_pred.shape[1])
                if self.num_labels and y_pred.shape[1] != self.num_labels:
                    raise DataError(
                        ("y_pred",),
                        f"AUC was given num_labels={self.num_labels}, "
                        f"got outputs {tuple(y_pred.shape)}",
                    )
            label_weights = self._label_weights(y_pred.device)
            if label_weights is not None and not self.multi_label:
                if y_pred.shape[-1:] != label_weights.shape:
                    raise DataError(
                        ("y_pred",),
                        f"{len(label_weights)} label_weights do not fit "
                        f"outputs {tuple(y_pred.shape)}",
                    )
            else:
                label_weights = None
            counts = confusion_counts(
                y_true,
                y_pred,
                weight,
                self._thresholds,
                evenly=self._evenly,
                multi_label=self.multi_label,
                label_weights=label_weights,
            )
            state = self._state(y_pred.device, {key: shape for key in ("tp", "fp", "tn", "fn")})
            for key, value in counts.items():
                state[key].add_(value)

    def _label_weights(self, device: torch.device) -> Tensor | None:
        if self.label_weights is None:
            return None
        return threshold_tensor(tuple(self.label_weights), device)

    def _by_label(self, terms: Tensor) -> Tensor:
        if not self.multi_label:
            return torch.sum(terms)
        by_label = torch.sum(terms, dim=0)
        weights = self._label_weights(terms.device)
        if weights is None:
            return torch.mean(by_label)
        return loss_utils.divide_no_nan(torch.sum(by_label * weights), torch.sum(weights))

    def _result(self, state: dict[str, Tensor]) -> Tensor:
        tp, fp, tn, fn = state["tp"], state["fp"], state["tn"], state["fn"]
        div = loss_utils.divide_no_nan
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolate_pr_auc(tp, fp, fn)
        recall = div(tp, tp + fn)
        if self.curve == "ROC":
            x, y = div(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, div(tp, tp + fp)
        else:
            scaling = div(tp + fn, tn + fp)
            zero, one = scalar_like(0.0, tp), scalar_like(1.0, tp)
            recall_gain = torch.where(tp == 0.0, zero, 1.0 - scaling * div(fn, tp))
            precision_gain = torch.where(tp == 0.0, one, 1.0 - scaling * div(fp, tp))
            x, y = torch.maximum(recall_gain, zero), precision_gain
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = torch.minimum(y[:-1], y[1:])
        else:
            heights = torch.maximum(y[:-1], y[1:])
        return self._by_label((x[:-1] - x[1:]) * heights)

    def _interpolate_pr_auc(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        div, zero = loss_utils.divide_no_nan, scalar_like(0.0, tp)
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        prec_slope = div(dtp, torch.maximum(dp, zero))
        intercept = tp[1:] - prec_slope * p[1:]
        safe_p_ratio = torch.where(
            (p[:-1] > 0) & (p[1:] > 0),
            div(p[:-1], torch.maximum(p[1:], zero)),
            torch.ones_like(p[1:]),
        )
        increment = div(
            prec_slope * (dtp + intercept * torch.log(safe_p_ratio)),
            torch.maximum(tp[1:] + fn[1:], zero),
        )
        return self._by_label(increment)
