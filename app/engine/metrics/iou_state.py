"""The state and numbers of Keras 3's IoU metrics on torch (their configs, checks and
registered classes are in `app.engine.metrics.iou`).

A (num_classes, num_classes) confusion matrix of true class (rows) against predicted class
(columns) over every update; `result` is the mean, over the target classes that occurred, of
TP / (TP + FP + FN). As in Keras:

* class ids are read as integers by truncation (with the default dtype "int32"; also sample
  weights, so a weight of 0.5 counts 0), or kept as floats with dtype "float32";
* `sparse_y_true`/`sparse_y_pred` false take the argmax along `axis` first;
* pairs whose label or prediction is outside [0, num_classes), or whose label is
  `ignore_class`, are left out.

Where Keras fails, this does the evident thing: weights of shape (samples,) for labels with
several entries per sample weigh each sample's entries (Keras cannot broadcast them), and an
`axis` other than -1 or 0 gives the mean IoU (Keras's `result` raises IndexError). Integer counts
are int64 (Keras's int32 would wrap past 2**31 pixels).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from app.engine.config.errors import DataError
from app.engine.metrics.base import Metric
from app.engine.metrics.state import weight_tensor
from app.engine.scalars import scalar

Tensor = torch.Tensor
Shape = tuple[int, ...]
EPSILON = 1e-7


@functools.lru_cache(maxsize=64)
def _index_tensor(ids: tuple[int, ...], device: torch.device) -> Tensor:
    """Class ids as an int64 device tensor, filled on the device (no host copy)."""
    with torch.inference_mode(False):
        return torch.stack([torch.full((), i, dtype=torch.int64, device=device) for i in ids])


class IoUMatrix(Metric):
    """The confusion matrix and Keras's IoU over `target_class_ids`."""

    direction = "up"
    # Config keys, declared by the classes in `app.engine.metrics.iou` (Keras's subclasses fix
    # some of them).
    num_classes: int
    target_class_ids: list[int]
    ignore_class: int | None
    sparse_y_true: bool
    sparse_y_pred: bool
    axis: int

    def __post_init__(self) -> None:
        super().__post_init__()
        self._integer = self.dtype != "float32"
        self._device: torch.device | None = None
        self._cm: Tensor | None = None

    # -- state ---------------------------------------------------------------------------------
    def to(self, device: torch.device | str) -> IoUMatrix:
        self._device = torch.device(device)
        if self._cm is not None:
            self._cm = self._cm.to(self._device)
        return self

    def reset_state(self) -> None:
        if self._cm is not None:
            self._cm.zero_()

    def _matrix(self, device: torch.device) -> Tensor:
        if self._cm is None:
            dtype = torch.int64 if self._integer else torch.float32
            n = self.num_classes
            self._cm = torch.zeros((n, n), dtype=dtype, device=device)
        elif self._cm.device != device:
            self.to(device)
        assert self._cm is not None
        return self._cm

    # -- update --------------------------------------------------------------------------------
    def _class_ids(self, y: Tensor, sparse: bool, what: str) -> Tensor:
        if not sparse:
            if y.dim() == 0 or not -y.dim() <= self.axis < y.dim():
                raise DataError((what,), f"axis {self.axis} is out of range for {tuple(y.shape)}")
            y = torch.argmax(y, dim=self.axis)
        return y

    def _predicted_ids(self, y_pred: Tensor) -> Tensor:
        return self._class_ids(y_pred, self.sparse_y_pred, "y_pred")

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> None:
        with torch.no_grad():
            labels = self._class_ids(y_true.detach(), self.sparse_y_true, "y_true")
            preds = self._predicted_ids(y_pred.detach())
            kind = torch.int64 if self._integer else torch.float32
            labels_shape = tuple(labels.shape)
            t, p = labels.to(kind).reshape(-1), preds.to(kind).reshape(-1)
            if t.shape != p.shape:
                raise DataError(("y_pred",), misfit(self, labels_shape, tuple(preds.shape)))
            weight = _flat_weights(weight_tensor(sample_weight, t), labels_shape, kind)
            n = self.num_classes
            keep = (t >= 0) & (t < n) & (p >= 0) & (p < n)
            if self.ignore_class is not None:
                keep = keep & (t != self.ignore_class)
            zero, one = scalar(0.0, kind, t.device), scalar(1.0, kind, t.device)
            index = torch.where(keep, t, zero).to(torch.int64) * n
            index = index + torch.where(keep, p, zero).to(torch.int64)
            counts = torch.where(keep, one if weight is None else weight, zero)
            cm = self._matrix(t.device)
            counts = torch.broadcast_to(counts, index.shape)
            if self._integer:
                cm.view(-1).index_add_(0, index, counts)
            else:  # float sums round as Keras's: this batch's matrix first, then the total
                cm.add_(torch.zeros_like(cm).view(-1).index_add_(0, index, counts).view(cm.shape))

    def result(self) -> Tensor:
        if self._cm is None:
            return torch.zeros((), dtype=torch.float32, device=self._device)
        with torch.no_grad():
            cm = self._cm
            tp = torch.diagonal(cm)
            denominator = torch.sum(cm, dim=0) + torch.sum(cm, dim=1) - tp
            ids = _index_tensor(tuple(self.target_class_ids), cm.device)
            tp = torch.gather(tp, 0, ids).to(torch.float32)
            denominator = torch.gather(denominator, 0, ids).to(torch.float32)
            valid = denominator > 1e-9
            iou = torch.where(valid, tp / (denominator + EPSILON), torch.zeros_like(tp))
            return torch.sum(iou) / (torch.sum(valid.to(torch.float32)) + EPSILON)


def misfit(metric: IoUMatrix, labels: Sequence[int], preds: Sequence[int]) -> str:
    hint = ""
    if metric.sparse_y_pred and len(preds) == len(labels) + 1:
        hint = "; if the outputs are class scores, set sparse_y_pred to false"
    return (
        f"{metric.name} needs one predicted class per label: labels give class ids of shape "
        f"{tuple(labels)}, outputs {tuple(preds)}{hint}"
    )


def _flat_weights(weight: Tensor | None, labels_shape: Shape, kind: torch.dtype) -> Tensor | None:
    """One weight per label entry, flattened; (samples,) weights spread over each sample's
    entries. Integer counts truncate the weights, as Keras's int32 matrix does."""
    if weight is None:
        return None
    total = int(np.prod(labels_shape))
    if weight.numel() == 1:
        weight = weight.reshape(())
    elif weight.numel() == total:
        weight = weight.reshape(-1)
    elif labels_shape and weight.numel() == labels_shape[0] == weight.shape[0]:
        per_sample = weight.reshape(labels_shape[0], *([1] * (len(labels_shape) - 1)))
        weight = torch.broadcast_to(per_sample, labels_shape).reshape(-1)
    else:
        raise DataError(
            ("sample_weight",),
            f"shape {tuple(weight.shape)} does not fit labels of shape {labels_shape}",
        )
    return weight.to(kind)
