"""Keras 3's accuracy metrics on torch: Accuracy, BinaryAccuracy, CategoricalAccuracy and
SparseCategoricalAccuracy (running means of per-sample matches)."""

from __future__ import annotations

import torch

from app.engine.config.declared import number
from app.engine.losses import reduction as loss_utils
from app.engine.metrics.base import METRICS, MeanMetricWrapper
from app.engine.scalars import scalar

Tensor = torch.Tensor


@METRICS.add("accuracy")
class Accuracy(MeanMetricWrapper):
    """Exact equality of labels and predictions."""

    default_name = "accuracy"
    direction = "up"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_true, y_pred = loss_utils.squeeze_or_expand_to_same_rank(y_true.to(y_pred.dtype), y_pred)
        return (y_true == y_pred).to(torch.float32)


@METRICS.add("binary_accuracy")
class BinaryAccuracy(MeanMetricWrapper):
    default_name = "binary_accuracy"
    direction = "up"
    threshold = number(0.5)

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        # Keras compares with a float32 tensor threshold, strictly greater.
        threshold = scalar(self.threshold, torch.float32, y_pred.device)
        y_true, y_pred = loss_utils.squeeze_or_expand_to_same_rank(y_true, y_pred)
        predicted = (y_pred > threshold).to(y_true.dtype)
        return (y_true == predicted).to(torch.float32)


def _argmax(x: Tensor) -> Tensor:
    # Keras's argmax returns int32 (first index on ties).
    return torch.argmax(x, dim=-1).to(torch.int32)


@METRICS.add("categorical_accuracy")
class CategoricalAccuracy(MeanMetricWrapper):
    default_name = "categorical_accuracy"
    direction = "up"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        labels = _argmax(y_true).to(y_pred.dtype)
        shape = labels.shape
        if labels.dim() == y_pred.dim():
            labels = labels.squeeze(-1)
        matches = (labels == _argmax(y_pred).to(labels.dtype)).to(torch.float32)
        return matches.reshape(shape)


@METRICS.add("sparse_categorical_accuracy")
class SparseCategoricalAccuracy(MeanMetricWrapper):
    default_name = "sparse_categorical_accuracy"
    direction = "up"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        labels = y_true.to(y_pred.dtype)
        shape = labels.shape
        if labels.dim() == y_pred.dim() and labels.shape[-1] == 1:
            labels = labels.squeeze(-1)
        matches = (labels == _argmax(y_pred).to(labels.dtype)).to(torch.float32)
        matches = matches.reshape(shape)
        return matches.squeeze(-1) if matches.dim() > 1 and matches.shape[-1] == 1 else matches
