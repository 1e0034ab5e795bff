"""Keras 3's FBetaScore and F1Score on torch: per-class (or, with `average="micro"`, pooled)
weighted true positives, false positives, false negatives and label support over every update,
combined into precision, recall and F-beta at `result`.

Inputs are (samples, classes) with one-hot or multi-hot labels. Without a `threshold` a score is
positive where it equals its row's maximum (and is not ~0); with one, where it is above it.

`average=None` (Keras's default) gives one score per class, a vector; the training log holds one
number per metric, so a request must pick "micro", "macro" or "weighted". The classes themselves
compute the vector, so only the request parser needs to change once logs can hold vectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from app.engine.config.declared import Key, number, number_or_none
from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.config.readers import get_str
from app.engine.metrics.base import METRICS
from app.engine.metrics.state import StateMetric, as_float, weight_tensor

Tensor = torch.Tensor
Shape = tuple[int, ...]
EPSILON = 1e-7
_AVERAGES = ("micro", "macro", "weighted")


def _read_average(config: Mapping[str, Any], key: str, loc: Loc, default: None) -> str | None:
    """One of `_AVERAGES`; None (Keras's default) is refused by `_validate`, naming the class."""
    if config.get(key) is None:
        return None
    average: str = get_str(config, key, loc, choices=_AVERAGES)
    return average


@METRICS.add("f_beta_score")
class FBetaScore(StateMetric):
    default_name = "fbeta_score"
    direction = "up"
    average = Key[str | None](_read_average, None)
    beta = number(1.0, min_value=0.0, min_exclusive=True)
    threshold = number_or_none(None, min_value=0.0, min_exclusive=True, max_value=1.0)

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        if values["average"] is None:
            raise ConfigError(
                (*loc, "average"),
                f"None (Keras's default: one score per class) is not supported, as the training "
                f"log holds one number per metric; pass one of {list(_AVERAGES)}, e.g. "
                f'{{"class_name": "{cls.__name__}", "config": {{"average": "macro"}}}}',
            )

    def check_labels(self, y_true: np.ndarray, y_pred_shape: Shape, loc: Loc) -> None:
        """DataError unless the labels are (samples, classes) like the outputs (whose batch
        dimension is ignored): caught when the request is checked rather than mid-fit."""
        out = tuple(y_pred_shape)
        if y_true.ndim != 2 or len(out) != 2 or y_true.shape[1] != out[1]:
            raise DataError(
                loc,
                f"{type(self).__name__} needs one-hot or multi-hot labels of shape (samples, "
                f"classes) for outputs {out}, got {tuple(y_true.shape)}",
            )

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> None:
        with torch.no_grad():
            y_true, y_pred = as_float(y_true.detach()), as_float(y_pred.detach())
            if y_pred.dim() != 2 or y_true.shape != y_pred.shape:
                raise DataError(
                    ("y_pred",),
                    f"{type(self).__name__} expects labels and outputs of shape (samples, "
                    f"classes), got {tuple(y_true.shape)} and {tuple(y_pred.shape)}",
                )
            if self.threshold is None:
                row_max = torch.amax(y_pred, dim=-1, keepdim=True)
                positive = (y_pred >= row_max) & (torch.abs(y_pred) > 1e-9)
            else:
                positive = y_pred > self.threshold
            pred = positive.to(torch.float32)
            weight = _row_weights(sample_weight, y_pred)
            shape: Shape = () if self.average == "micro" else (y_pred.shape[1],)
            state = self._state(y_pred.device, {k: shape for k in ("tp", "fp", "fn", "support")})
            for key, values in (
                ("tp", pred * y_true),
                ("fp", pred * (1 - y_true)),
                ("fn", (1 - pred) * y_true),
                ("support", y_true),
            ):
                if weight is not None:
                    values = values * weight
                state[key].add_(torch.sum(values) if not shape else torch.sum(values, dim=0))

    def _result(self, state: dict[str, Tensor]) -> Tensor:
        tp = state["tp"]
        precision = tp / (tp + state["fp"] + EPSILON)
        recall = tp / (tp + state["fn"] + EPSILON)
        beta2 = self.beta**2
        score = precision * recall / (beta2 * precision + recall + EPSILON) * (1 + beta2)
        if self.average == "weighted":
            support = state["support"]
            return torch.sum(score * (support / (torch.sum(support) + EPSILON)))
        if self.average is not None:
            return torch.mean(score)
        return score


@METRICS.add("f1_score")
class F1Score(FBetaScore):
    """FBetaScore with beta 1 (and no `beta` in its config)."""

    default_name = "f1_score"
    beta = 1.0  # not a config key


def _row_weights(sample_weight: Tensor | None, y_pred: Tensor) -> Tensor | None:
    """Per-sample weights as a (samples, 1) column (Keras expands (samples,) weights on axis 1);
    a scalar applies to every sample, and (samples, 1) is read as (samples,)."""
    weight = weight_tensor(sample_weight, y_pred)
    if weight is None:
        return None
    if weight.dim() == 2 and weight.shape[1] == 1:
        weight = weight[:, 0]
    if weight.dim() == 0 or (weight.dim() == 1 and weight.shape[0] in (1, y_pred.shape[0])):
        return weight.reshape(-1, 1)
    raise DataError(
        ("sample_weight",),
        f"needs one weight per sample ({y_pred.shape[0]}), got shape {tuple(weight.shape)}",
    )
