"""Keras 3's confusion-matrix metrics on torch: TruePositives, FalsePositives, TrueNegatives,
FalseNegatives, Precision, Recall and AUC (ROC, PR or PRGAIN; interpolation, minoring or
majoring; multi_label; from_logits).

The counts, Precision and Recall compute Keras's vector result for a list of several thresholds
(one value per threshold), but a request may give only one: the training log holds one number
per metric.

The counting follows Keras's `update_confusion_matrix_variables`: a prediction is positive when
strictly above a threshold, a label when nonzero, and all label columns are pooled (unless AUC's
`multi_label`). Evenly spaced thresholds (AUC's default) take Keras's bucketed path: predictions
clipped to [0, 1], bucket `ceil(p * (T - 1)) - 1`, then reversed cumulative sums.

Names: where Keras numbers unnamed instances per process (auc, auc_1, ...), a metric here is
named by its plain default (auc, precision, true_positives) every time.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch

from app.engine.config.declared import integer_or_none
from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.losses import reduction as loss_utils
from app.engine.metrics.base import METRICS
from app.engine.metrics.state import StateMetric, as_float, thresholds_key, weight_tensor
from app.engine.scalars import scalar, scalar_like

Tensor = torch.Tensor
NEG_INF = -1e10
EPSILON = 1e-7


def evenly_spaced(thresholds: Sequence[float]) -> bool:
    """Keras's `is_evenly_distributed_thresholds` (float32 arange, numpy's allclose)."""
    n = len(thresholds)
    if n < 3:
        return False
    even = np.arange(n, dtype=np.float32) / (n - 1)
    return bool(np.allclose(thresholds, even, atol=EPSILON))


@functools.lru_cache(maxsize=64)
def threshold_tensor(thresholds: tuple[float, ...], device: torch.device) -> Tensor:
    """The thresholds as a float32 device tensor, filled on the device (no host copy)."""
    with torch.inference_mode(False):
        return torch.stack([scalar(t, torch.float32, device) for t in thresholds])


def filter_top_k(x: Tensor, k: int) -> Tensor:
    idx = torch.topk(x, k).indices
    mask = torch.zeros_like(x).scatter_(-1, idx, 1.0)
    return x * mask + NEG_INF * (1 - mask)


def _prepare(
    y_true: Tensor,
    y_pred: Tensor,
    sample_weight: Tensor | None,
    top_k: int | None,
    class_id: int | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    y_true, y_pred = as_float(y_true.detach()), as_float(y_pred.detach())
    y_pred, y_true = loss_utils.squeeze_or_expand_to_same_rank(y_pred, y_true)
    weight = weight_tensor(sample_weight, y_pred)
    if weight is not None:
        weight = weight.unsqueeze(-1)
        _, weight = loss_utils.squeeze_or_expand_to_same_rank(y_true, weight, expand_rank_1=False)
    if top_k is not None:
        y_pred = filter_top_k(y_pred, top_k)
    if class_id is not None:
        if y_pred.dim() < 2 or not -y_pred.shape[-1] <= class_id < y_pred.shape[-1]:
            raise DataError(
                ("y_pred",),
                f"class_id {class_id} needs outputs (samples, classes), got {tuple(y_pred.shape)}",
            )
        y_true, y_pred = y_true[..., class_id, None], y_pred[..., class_id, None]
    if y_true.shape != y_pred.shape:
        raise DataError(
            ("y_true",), f"labels {tuple(y_true.shape)} do not fit outputs {tuple(y_pred.shape)}"
        )
    if weight is not None:
        try:
            weight = torch.broadcast_to(weight, y_pred.shape)
        except RuntimeError:
            raise DataError(
                ("sample_weight",),
                f"shape {tuple(weight.shape)} does not fit outputs {tuple(y_pred.shape)}",
            ) from None
    return y_true, y_pred, weight


def confusion_counts(
    y_true: Tensor,
    y_pred: Tensor,
    weight: Tensor | None,
    thresholds: Sequence[float],
    *,
    evenly: bool = False,
    multi_label: bool = False,
    label_weights: Tensor | None = None,
) -> dict[str, Tensor]:
    """TP, FP, TN, FN per threshold ((T,) or (T, labels) with multi_label) for prepared inputs;
    `evenly` (thresholds evenly spaced over [0, 1]) takes Keras's bucketed path."""
    if label_weights is not None:
        lw = torch.broadcast_to(label_weights.to(y_pred.device)[None], y_pred.shape)
        weight = lw if weight is None else weight * lw
    if evenly:
        with_eps = thresholds[0] < 0.0 or thresholds[-1] > 1.0
        return _bucketed(y_true, y_pred, weight, len(thresholds), with_eps, multi_label)
    t = threshold_tensor(tuple(thresholds), y_pred.device)
    if multi_label:
        preds, labels, t = y_pred[None], (y_true != 0)[None], t.reshape(-1, 1, 1)
        w = None if weight is None else weight[None]
    else:
        preds, labels, t = y_pred.reshape(1, -1), (y_true != 0).reshape(1, -1), t.reshape(-1, 1)
        w = None if weight is None else weight.reshape(1, -1)
    pred_pos = preds > t
    pairs = {
        "tp": (labels, pred_pos),
        "fn": (labels, ~pred_pos),
        "fp": (~labels, pred_pos),
        "tn": (~labels, ~pred_pos),
    }
    out = {}
    for key, (label, pred) in pairs.items():
        both = label & pred
        hits = both.to(torch.float32) if w is None else torch.where(both, w, scalar_like(0.0, w))
        out[key] = torch.sum(hits, dim=1)
    return out


def _bucketed(
    y_true: Tensor,
    y_pred: Tensor,
    weight: Tensor | None,
    n: int,
    with_eps: bool,
    multi_label: bool,
) -> dict[str, Tensor]:
    y_pred = torch.clip(y_pred, 0.0, 1.0)
    y_true = (y_true != 0).to(torch.float32)
    if not multi_label:
        y_true, y_pred = y_true.reshape(-1), y_pred.reshape(-1)
        weight = None if weight is None else weight.reshape(-1)
    w = scalar_like(1.0, y_pred) if weight is None else weight
    true_labels, false_labels = y_true * w, (1.0 - y_true) * w
    buckets = torch.ceil(y_pred * (scalar_like(float(n), y_pred) - 1)) - 1
    if with_eps:
        buckets = torch.relu(buckets)
    index = buckets.to(torch.int64)
    index = torch.where((index >= 0) & (index < n), index, n)  # Keras drops these
    if multi_label:
        true_labels, false_labels, index = true_labels.T, false_labels.T, index.T

    def segments(data: Tensor) -> Tensor:
        data = torch.broadcast_to(data, index.shape)
        zeros = torch.zeros((*index.shape[:-1], n + 1), dtype=torch.float32, device=data.device)
        per_bucket = zeros.scatter_add_(-1, index, data)[..., :n]
        counts = torch.flip(torch.cumsum(torch.flip(per_bucket, (-1,)), dim=-1), (-1,))
        return counts.T if multi_label else counts

    tp, fp = segments(true_labels), segments(false_labels)
    total_true = torch.sum(torch.broadcast_to(true_labels, index.shape), dim=-1)
    total_false = torch.sum(torch.broadcast_to(false_labels, index.shape), dim=-1)
    return {"tp": tp, "fp": fp, "tn": total_false - fp, "fn": total_true - tp}


class _Confusion(StateMetric):
    """Counts per threshold (0.5 by default), kept as Keras's (thresholds,) accumulators; the
    result is a scalar for one threshold, else a vector. Evenly spaced thresholds (at least 3,
    0 to 1) take Keras's bucketed path."""

    keys: ClassVar[tuple[str, ...]]
    thresholds = thresholds_key(single=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        given = self._default_threshold() if self.thresholds is None else self.thresholds
        values = given if isinstance(given, list | tuple) else [given]
        self._thresholds = [float(t) for t in values]
        self._evenly = evenly_spaced(self._thresholds)

    def _default_threshold(self) -> float:
        return 0.5

    def _top_k_class(self) -> tuple[int | None, int | None]:
        return None, None

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> None:
        with torch.no_grad():
            y_true, y_pred, weight = _prepare(y_true, y_pred, sample_weight, *self._top_k_class())
            counts = confusion_counts(y_true, y_pred, weight, self._thresholds, evenly=self._evenly)
            shape = (len(self._thresholds),)
            state = self._state(y_pred.device, {key: shape for key in self.keys})
            for key in self.keys:
                state[key].add_(counts[key])

    def _one_or_all(self, values: Tensor) -> Tensor:
        return values[0] if len(self._thresholds) == 1 else values

    def _result(self, state: dict[str, Tensor]) -> Tensor:
        return self._one_or_all(state[self.keys[0]])  # the count itself


@METRICS.add("true_positives")
class TruePositives(_Confusion):
    default_name = "true_positives"
    keys = ("tp",)


@METRICS.add("false_positives")
class FalsePositives(_Confusion):
    default_name = "false_positives"
    keys = ("fp",)


@METRICS.add("true_negatives")
class TrueNegatives(_Confusion):
    default_name = "true_negatives"
    keys = ("tn",)


@METRICS.add("false_negatives")
class FalseNegatives(_Confusion):
    default_name = "false_negatives"
    keys = ("fn",)


class _PrecisionRecall(_Confusion):
    """With `top_k`, only each row's k highest scores can be positive (threshold -1e10 unless
    given); `class_id` scores one column."""

    direction = "up"
    top_k = integer_or_none(None, min_value=1)
    class_id = integer_or_none(None)

    def _default_threshold(self) -> float:
        return 0.5 if self.top_k is None else NEG_INF

    def _top_k_class(self) -> tuple[int | None, int | None]:
        return self.top_k, self.class_id

    def check_output(self, y_pred_shape: tuple[int | None, ...], loc: Loc) -> None:
        """ConfigError when top_k exceeds the output's classes (Keras fails mid-fit)."""
        width = y_pred_shape[-1] if y_pred_shape else 1
        if self.top_k is not None and width is not None and self.top_k > width:
            raise ConfigError(
                loc,
                f"{type(self).__name__} with top_k={self.top_k} needs an "
                f"output of at least {self.top_k} classes, got shape "
                f"{tuple(y_pred_shape)}",
            )


@METRICS.add("precision")
class Precision(_PrecisionRecall):
    default_name = "precision"
    keys = ("tp", "fp")

    def _result(self, state: dict[str, Tensor]) -> Tensor:
        return self._one_or_all(loss_utils.divide_no_nan(state["tp"], state["tp"] + state["fp"]))


@METRICS.add("recall")
class Recall(_PrecisionRecall):
    default_name = "recall"
    keys = ("tp", "fn")

    def _result(self, state: dict[str, Tensor]) -> Tensor:
        return self._one_or_all(loss_utils.divide_no_nan(state["tp"], state["tp"] + state["fn"]))
