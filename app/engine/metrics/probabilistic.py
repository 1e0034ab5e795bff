"""Keras 3's probabilistic, hinge and top-k metrics on torch: running weighted means of Keras's
per-sample functions (BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy,
KLDivergence, Poisson, Hinge, SquaredHinge, CategoricalHinge, TopKCategoricalAccuracy,
SparseTopKCategoricalAccuracy).

Keras's metrics here wrap its loss functions, so all but top-k average the engine's losses' `call`
(`Float32LossMetric`), which brings labels and outputs to the same rank first, as Keras's loss
classes do (its bare functions would broadcast (N,) against (N, 1)).
"""

from __future__ import annotations

import torch

from app.engine import losses
from app.engine.config.declared import Key, boolean, integer, number
from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.losses.base import EPSILON as EPSILON
from app.engine.metrics.base import METRICS, MeanMetricWrapper
from app.engine.metrics.regression import Float32LossMetric
from app.engine.metrics.state import as_float

Tensor = torch.Tensor


class _CrossentropyMetric(Float32LossMetric):
    from_logits = boolean(False)
    label_smoothing = number(0, min_value=0.0, max_value=1.0)


@METRICS.add("binary_crossentropy", "bce", "BCE")
class BinaryCrossentropy(_CrossentropyMetric):
    default_name = "binary_crossentropy"

    def _make_loss(self) -> losses.Loss:
        return losses.BinaryCrossentropy(
            from_logits=self.from_logits, label_smoothing=self.label_smoothing
        )


@METRICS.add("categorical_crossentropy")
class CategoricalCrossentropy(_CrossentropyMetric):
    default_name = "categorical_crossentropy"
    axis = integer(-1)

    def _make_loss(self) -> losses.Loss:
        return losses.CategoricalCrossentropy(
            from_logits=self.from_logits, label_smoothing=self.label_smoothing, axis=self.axis
        )


_SPARSE_LOSS = losses.SparseCategoricalCrossentropy


@METRICS.add("sparse_categorical_crossentropy")
class SparseCategoricalCrossentropy(MeanMetricWrapper):
    default_name = "sparse_categorical_crossentropy"
    direction = "down"
    from_logits = boolean(False)
    # The loss's keys and limits (ignore_class unset, axis -1); Keras's metric writes both.
    ignore_class = _SPARSE_LOSS.ignore_class
    axis = Key[int](_SPARSE_LOSS.axis.read, -1)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._loss = _SPARSE_LOSS(from_logits=self.from_logits)

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        # Keras's metric wraps the bare function (no loss-class rank alignment): `fn`, not `call`.
        return self._loss.fn(y_true, as_float(y_pred))


@METRICS.add("kl_divergence")
class KLDivergence(Float32LossMetric):
    default_name = "kl_divergence"
    loss = losses.KLDivergence


@METRICS.add("poisson")
class Poisson(Float32LossMetric):
    default_name = "poisson"
    loss = losses.Poisson


@METRICS.add("hinge")
class Hinge(Float32LossMetric):
    default_name = "hinge"
    loss = losses.Hinge


@METRICS.add("squared_hinge")
class SquaredHinge(Float32LossMetric):
    default_name = "squared_hinge"
    loss = losses.SquaredHinge


@METRICS.add("categorical_hinge")
class CategoricalHinge(Float32LossMetric):
    default_name = "categorical_hinge"
    loss = losses.CategoricalHinge


def _in_top_k(targets: Tensor, predictions: Tensor, k: int) -> Tensor:
    """Keras's `in_top_k`: the target's score is at least the k-th largest (ties count)."""
    if not 1 <= k <= predictions.shape[-1]:
        raise DataError(("y_pred",), f"k={k} needs at least k classes, got {predictions.shape}")
    top = torch.topk(predictions, k).values
    target_values = torch.take_along_dim(predictions, targets.to(torch.int64)[:, None], dim=-1)
    return torch.any(target_values >= top, dim=-1)


class _TopK(MeanMetricWrapper):
    direction = "up"
    k = integer(5, min_value=1)

    def check_output(self, y_pred_shape: tuple[int | None, ...], loc: Loc) -> None:
        """ConfigError when the output has fewer than k classes: Keras's torch backend fails
        with "selected index k out of range" at the first batch."""
        if getattr(self, "from_sorted_ids", False):
            return  # ids already sorted: the first k columns, however many there are
        width = y_pred_shape[-1] if y_pred_shape else 1
        if width is not None and self.k > width:
            raise ConfigError(
                loc,
                f"{type(self).__name__} with k={self.k} needs an output of at least {self.k} "
                f"classes, got shape {tuple(y_pred_shape)}",
            )

    def _matches(self, labels: Tensor, y_pred: Tensor) -> Tensor:
        raise NotImplementedError

    def _top_k(self, labels: Tensor, y_pred: Tensor) -> Tensor:
        shape = labels.shape
        if y_pred.dim() > 2:
            y_pred = y_pred.reshape(-1, y_pred.shape[-1])
        if labels.dim() > 1:
            labels = labels.reshape(-1)
        if y_pred.dim() != 2 or labels.dim() != 1 or labels.shape[0] != y_pred.shape[0]:
            raise DataError(
                ("y_pred",),
                f"labels {tuple(shape)} do not fit top-k scores of shape {tuple(y_pred.shape)}",
            )
        return self._matches(labels, y_pred).to(torch.float32).reshape(shape)


@METRICS.add("top_k_categorical_accuracy")
class TopKCategoricalAccuracy(_TopK):
    default_name = "top_k_categorical_accuracy"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_pred = as_float(y_pred)
        return self._top_k(torch.argmax(y_true.to(y_pred.dtype), dim=-1), y_pred)

    def _matches(self, labels: Tensor, y_pred: Tensor) -> Tensor:
        return _in_top_k(labels, y_pred, self.k)


@METRICS.add("sparse_top_k_categorical_accuracy")
class SparseTopKCategoricalAccuracy(_TopK):
    """Integer labels in the top k scores; with `from_sorted_ids`, `y_pred` already holds class
    ids sorted by score (its first k columns are the top k)."""

    default_name = "sparse_top_k_categorical_accuracy"
    from_sorted_ids = boolean(False)
    written_when_set = ("from_sorted_ids",)  # as Keras writes it

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_pred = as_float(y_pred)
        # Keras casts labels to int32 (truncating), or to the ids' dtype when they are sorted ids.
        labels = y_true.to(y_pred.dtype) if self.from_sorted_ids else y_true.to(torch.int32)
        return self._top_k(labels, y_pred)

    def _matches(self, labels: Tensor, y_pred: Tensor) -> Tensor:
        if self.from_sorted_ids:
            return torch.any(labels[:, None] == y_pred[:, : self.k], dim=1)
        return _in_top_k(labels, y_pred, self.k)
