"""Keras 3's "X at Y" metrics on torch: PrecisionAtRecall, RecallAtPrecision,
SensitivityAtSpecificity and SpecificityAtSensitivity.

Each counts TP, FP, TN and FN at `num_thresholds` thresholds evenly spaced over [0, 1] (ends
included, no epsilon; Keras's bucketed path) or, with one threshold, at 0.5; `class_id` scores
one column. The result is the best value of one rate among the thresholds where the other rate
reaches the target (0 when none does).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from app.engine.config.declared import Key, integer, integer_or_none, number
from app.engine.losses.reduction import divide_no_nan
from app.engine.metrics.base import METRICS
from app.engine.metrics.confusion import _prepare, confusion_counts
from app.engine.metrics.state import MAX_THRESHOLDS, StateMetric
from app.engine.scalars import scalar_like

Tensor = torch.Tensor


def _recall(tp: Tensor, fp: Tensor, tn: Tensor, fn: Tensor) -> Tensor:
    return divide_no_nan(tp, tp + fn)


def _specificity(tp: Tensor, fp: Tensor, tn: Tensor, fn: Tensor) -> Tensor:
    return divide_no_nan(tn, tn + fp)


def _precision(tp: Tensor, fp: Tensor, tn: Tensor, fn: Tensor) -> Tensor:
    return divide_no_nan(tp, tp + fp)


# Each rate by its name (sensitivity is recall).
_RATES = {
    "sensitivity": _recall,
    "recall": _recall,
    "specificity": _specificity,
    "precision": _precision,
}


def _target() -> Key[float]:
    """The rate's target: required, in [0, 1]."""
    return number(min_value=0.0, max_value=1.0)


class _AtBase(StateMetric):
    """A metric "<dependent> at <value_key>": the best dependent rate where the rate named by
    `value_key` reaches the target. Each subclass declares that target as its last key
    (`_target()`, named by the rate); the default name follows from the two names."""

    direction = "up"
    dependent: ClassVar[str]
    value_key: ClassVar[str]
    class_id = integer_or_none(None)
    num_thresholds = integer(200, min_value=1, max_value=MAX_THRESHOLDS)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.value_key = list(cls.declared_keys)[-1]
        cls.default_name = f"{cls.dependent}_at_{cls.value_key}"

    def __post_init__(self) -> None:
        super().__post_init__()
        n = self.num_thresholds
        if n == 1:
            self._thresholds, self._evenly = [0.5], False
        else:
            inner = [(i + 1) * 1.0 / (n - 1) for i in range(n - 2)]
            self._thresholds, self._evenly = [0.0, *inner, 1.0], True

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> None:
        with torch.no_grad():
            y_true, y_pred, weight = _prepare(y_true, y_pred, sample_weight, None, self.class_id)
            counts = confusion_counts(y_true, y_pred, weight, self._thresholds, evenly=self._evenly)
            shape = (len(self._thresholds),)
            state = self._state(y_pred.device, {key: shape for key in ("tp", "fp", "tn", "fn")})
            for key, value in counts.items():
                state[key].add_(value)

    def _result(self, state: dict[str, Tensor]) -> Tensor:
        counts = (state["tp"], state["fp"], state["tn"], state["fn"])
        constrained = _RATES[self.value_key](*counts)
        dependent = _RATES[self.dependent](*counts)
        zero = scalar_like(0.0, dependent)
        target = scalar_like(self._value(self.value_key), constrained)
        best = torch.where(constrained >= target, dependent, zero)
        return torch.maximum(torch.amax(best), zero)


@METRICS.add("sensitivity_at_specificity")
class SensitivityAtSpecificity(_AtBase):
    dependent = "sensitivity"
    specificity = _target()


@METRICS.add("specificity_at_sensitivity")
class SpecificityAtSensitivity(_AtBase):
    dependent = "specificity"
    sensitivity = _target()


@METRICS.add("precision_at_recall")
class PrecisionAtRecall(_AtBase):
    dependent = "precision"
    recall = _target()


@METRICS.add("recall_at_precision")
class RecallAtPrecision(_AtBase):
    dependent = "recall"
    precision = _target()
