"""Keras 3's "X at Y" metrics on torch: PrecisionAtRecall, RecallAtPrecision,
SensitivityAtSpecificity and SpecificityAtSensitivity.

Each counts TP, FP, TN and FN at `num_thresholds` thresholds evenly spaced over [0, 1] (ends
included, no epsilon; Keras's bucketed path) or, with one threshold, at 0.5; `class_id` scores
one column. The result is the best value of one rate among the thresholds where the other rate
reaches the target (0 when none does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from app.engine.config.errors import Loc
from app.engine.config.readers import get_float, get_int
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
    "sensitivity": _recall, "recall": _recall, "specificity": _specificity,
    "precision": _precision,
}  # fmt: skip


class _AtBase(StateMetric):
    """A metric "<dependent> at <value_key>": the best dependent rate where the rate named by
    `value_key` (also the target's config key) reaches the target. The default name and the
    config keys follow from the two names."""

    direction = "up"
    dependent: ClassVar[str]
    value_key: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.default_name = f"{cls.dependent}_at_{cls.value_key}"
        cls._extra_keys = ("class_id", "num_thresholds", cls.value_key)

    def __init__(
        self,
        name: str | None = None,
        *,
        value: float,
        num_thresholds: int = 200,
        class_id: int | None = None,
    ) -> None:
        super().__init__(name)
        self.value, self.num_thresholds, self.class_id = value, num_thresholds, class_id
        if num_thresholds == 1:
            self.thresholds, self._evenly = [0.5], False
        else:
            inner = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self.thresholds, self._evenly = [0.0, *inner, 1.0], True

    def _extra_config(self) -> dict[str, Any]:
        return {"class_id": self.class_id, "num_thresholds": self.num_thresholds,
                self.value_key: self.value}  # fmt: skip

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            "value": get_float(config, cls.value_key, loc, min_value=0.0, max_value=1.0),
            "num_thresholds": get_int(
                config, "num_thresholds", loc, 200, min_value=1, max_value=MAX_THRESHOLDS
            ),
            "class_id": get_int(config, "class_id", loc, None),
        }

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> None:
        with torch.no_grad():
            y_true, y_pred, weight = _prepare(y_true, y_pred, sample_weight, None, self.class_id)
            counts = confusion_counts(y_true, y_pred, weight, self.thresholds, evenly=self._evenly)
            shape = (len(self.thresholds),)
            state = self._state(y_pred.device, {key: shape for key in ("tp", "fp", "tn", "fn")})
            for key, value in counts.items():
                state[key].add_(value)

    def _result(self, state: dict[str, Tensor]) -> Tensor:
        counts = (state["tp"], state["fp"], state["tn"], state["fn"])
        constrained = _RATES[self.value_key](*counts)
        dependent = _RATES[self.dependent](*counts)
        zero = scalar_like(0.0, dependent)
        best = torch.where(constrained >= scalar_like(self.value, constrained), dependent, zero)
        return torch.maximum(torch.amax(best), zero)


@METRICS.register("SensitivityAtSpecificity", "sensitivity_at_specificity")
class SensitivityAtSpecificity(_AtBase):
    dependent, value_key = "sensitivity", "specificity"


@METRICS.register("SpecificityAtSensitivity", "specificity_at_sensitivity")
class SpecificityAtSensitivity(_AtBase):
    dependent, value_key = "specificity", "sensitivity"


@METRICS.register("PrecisionAtRecall", "precision_at_recall")
class PrecisionAtRecall(_AtBase):
    dependent, value_key = "precision", "recall"


@METRICS.register("RecallAtPrecision", "recall_at_precision")
class RecallAtPrecision(_AtBase):
    dependent, value_key = "recall", "precision"
