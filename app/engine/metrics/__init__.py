"""Keras 3 metrics on torch: the METRICS registry, compile's resolution of metric identifiers
(`get`: "accuracy" by shapes, a string kept as the metric's name) and every metric.

The Metric base, the registry and the running means live in `base`, the multi-tensor state base in
`state`, and the metrics one module per kind: `accuracy`, `regression`, `probabilistic`,
`confusion`, `fixed_rate` (X at Y), `auc`, `fscore`, `iou` (with its state in `iou_state`) and
`correlation`. Importing this package imports each of them, which registers their metrics.
"""

from __future__ import annotations

from typing import Any

from app.engine.config.errors import ConfigError, Loc
from app.engine.losses import reduction as loss_utils
from app.engine.metrics import (
    accuracy,
    auc,
    confusion,
    correlation,
    fixed_rate,
    fscore,
    iou,
    probabilistic,
    regression,
)
from app.engine.metrics.accuracy import Accuracy as Accuracy
from app.engine.metrics.accuracy import BinaryAccuracy as BinaryAccuracy
from app.engine.metrics.accuracy import CategoricalAccuracy as CategoricalAccuracy
from app.engine.metrics.accuracy import SparseCategoricalAccuracy as SparseCategoricalAccuracy
from app.engine.metrics.base import METRICS as METRICS
from app.engine.metrics.base import LossMetric as LossMetric
from app.engine.metrics.base import Mean as Mean
from app.engine.metrics.base import MeanMetricWrapper as MeanMetricWrapper
from app.engine.metrics.base import Metric as Metric
from app.engine.metrics.base import Shape as Shape
from app.engine.metrics.base import Weight as Weight
from app.engine.metrics.regression import MeanAbsoluteError as MeanAbsoluteError
from app.engine.metrics.regression import MeanSquaredError as MeanSquaredError

__all__ = [
    "METRICS",
    "Accuracy",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "LossMetric",
    "Mean",
    "MeanAbsoluteError",
    "MeanMetricWrapper",
    "MeanSquaredError",
    "Metric",
    "SparseCategoricalAccuracy",
    "accuracy",
    "auc",
    "confusion",
    "correlation",
    "fixed_rate",
    "fscore",
    "get",
    "iou",
    "probabilistic",
    "regression",
]

_ACCURACY_STRINGS = ("accuracy", "acc")


def get(identifier: Any, loc: Loc, *, y_true_shape: Shape, y_pred_shape: Shape) -> Metric:
    """Resolve a compile metric as Keras does: "accuracy"/"acc" (any case) by the label and
    output shapes (batch dimension included); a string identifier becomes the metric's name."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _ACCURACY_STRINGS:
        choices = (BinaryAccuracy, SparseCategoricalAccuracy, CategoricalAccuracy)
        cls: type[MeanMetricWrapper] = loss_utils.pick_by_shape(
            tuple(y_true_shape), tuple(y_pred_shape), choices
        )
        return cls(name=identifier)
    if isinstance(identifier, str) and identifier.lower() == "mean":
        raise ConfigError(loc, "'mean' averages values, not labels and predictions")
    found, config, cloc = METRICS.parse(identifier, loc)
    metric = found.from_config(config, cloc)
    if isinstance(identifier, str):
        metric.name = identifier
    return metric
