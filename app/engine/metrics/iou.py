"""Keras 3's IoU metrics on torch: IoU, MeanIoU, OneHotIoU, OneHotMeanIoU and BinaryIoU, their
configs (Keras's, dtype "int32" by default) and a request-time check of their labels. The
confusion matrix and the numbers are in `app.engine.metrics.iou_state`.

IoU and MeanIoU expect class ids as outputs by default, not scores (`sparse_y_pred`);
BinaryIoU predicts class 1 where the score is >= `threshold` (unlike BinaryAccuracy's >).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from app.engine.config.declared import Derived, Key, boolean, integer, integer_or_none, number
from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.losses import reduction as loss_utils
from app.engine.metrics.base import METRICS
from app.engine.metrics.iou_state import IoUMatrix, misfit

Tensor = torch.Tensor
Shape = tuple[int, ...]
MAX_CLASSES = 4096  # the matrix is num_classes**2 int64 counts: 128 MiB at this size
_DTYPES = ("int32", "float32")


def _read_dtype(config: Mapping[str, Any], key: str, loc: Loc, default: str) -> str:
    dtype = config.get(key)
    name = dtype
    if isinstance(dtype, Mapping):  # Keras's DTypePolicy object
        inner = dtype.get("config")
        name = inner.get("name") if isinstance(inner, Mapping) else None
    if dtype is None:
        return default
    if name not in _DTYPES:
        raise ConfigError((*loc, key), f"must be one of {list(_DTYPES)}, got {dtype!r}")
    return str(name)


def _read_class_ids(config: Mapping[str, Any], key: str, loc: Loc, default: Any = None) -> Any:
    """As given: checked by `_IoUBase._validate` against `num_classes`."""
    return config.get(key, default)


class _IoUBase(IoUMatrix):
    """Keras's IoU keys and configs (dtype "int32" by default); a subclass fixes a key by
    setting it as a plain class attribute, as Keras's subclasses do."""

    dtype = Key[str](_read_dtype, "int32")
    num_classes = integer(min_value=1, max_value=MAX_CLASSES)
    target_class_ids = Key[list[int]](_read_class_ids)
    ignore_class = integer_or_none(None)
    sparse_y_true = boolean(True)
    sparse_y_pred = boolean(True)
    axis = integer(-1)

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        if "target_class_ids" in values:
            limit = values.get("num_classes", 2)  # BinaryIoU: two classes
            _check_class_ids(values["target_class_ids"], (*loc, "target_class_ids"), limit)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.target_class_ids = list(self.target_class_ids)

    # -- request-time check --------------------------------------------------------------------
    def check_labels(self, y_true: np.ndarray, y_pred_shape: Shape, loc: Loc) -> None:
        """DataError for labels Keras would silently truncate or leave out (fractional class
        ids, ids outside [0, num_classes) that are not `ignore_class`, one-hot rows wider than
        num_classes) or whose entries per sample differ from the outputs' class ids."""
        y = loss_utils.numeric_labels(np.asarray(y_true), loc)
        if self.sparse_y_true:
            ids_shape = y.shape
            if y.size and not np.array_equal(y, np.trunc(y)):
                raise DataError(loc, f"{self.name} needs whole class ids as labels")
            bad = (y < 0) | (y >= self.num_classes)
            if self.ignore_class is not None:
                bad &= y != self.ignore_class
            if bad.any():
                raise DataError(
                    loc,
                    f"{self.name} needs class ids in [0, {self.num_classes}), got "
                    f"{y[bad].flat[0].item():g}; Keras would silently leave such labels out: set "
                    "ignore_class to leave one out on purpose",
                )
        else:
            if y.ndim == 0 or not -y.ndim <= self.axis < y.ndim:
                raise DataError(loc, f"axis {self.axis} is out of range for labels {y.shape}")
            if y.shape[self.axis] > self.num_classes:
                raise DataError(
                    loc,
                    f"{self.name} has {self.num_classes} classes, got one-hot labels with "
                    f"{y.shape[self.axis]} along axis {self.axis}",
                )
            ids_shape = tuple(np.delete(np.array(y.shape), self.axis).tolist())
        preds_shape = list(self._predicted_shape(tuple(y_pred_shape)))
        if None in preds_shape[1:]:  # an unknown output size is checked at the update
            return
        if int(np.prod(ids_shape[1:])) != int(np.prod(preds_shape[1:])):
            raise DataError(loc, misfit(self, tuple(ids_shape), tuple(preds_shape)))

    def _predicted_shape(self, shape: Shape) -> Shape:
        if self.sparse_y_pred or not shape or not -len(shape) <= self.axis < len(shape):
            return shape
        return tuple(s for i, s in enumerate(shape) if i != self.axis % len(shape))


def _check_class_ids(value: Any, loc: Loc, limit: int) -> None:
    if value is None:
        raise ConfigError(loc, "is required")
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(loc, f"must be a non-empty list of class ids, got {value!r}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < limit:
            raise ConfigError(loc, f"class ids must be integers in [0, {limit}), got {v!r}")


@METRICS.add("io_u")
class IoU(_IoUBase):
    default_name = "io_u"


@METRICS.add("mean_io_u")
class MeanIoU(_IoUBase):
    """IoU over every class."""

    default_name = "mean_io_u"
    target_class_ids = []  # every class (set from num_classes), not a config key

    def __post_init__(self) -> None:
        super().__post_init__()
        self.target_class_ids = list(range(self.num_classes))


@METRICS.add("one_hot_io_u")
class OneHotIoU(_IoUBase):
    """IoU with one-hot labels (and, by default, scores as outputs)."""

    default_name = "one_hot_io_u"
    sparse_y_true = False
    sparse_y_pred = boolean(False)


@METRICS.add("one_hot_mean_io_u")
class OneHotMeanIoU(MeanIoU):
    """MeanIoU with one-hot labels (and, by default, scores as outputs)."""

    default_name = "one_hot_mean_io_u"
    sparse_y_true = False
    sparse_y_pred = boolean(False)


@METRICS.add("binary_io_u")
class BinaryIoU(_IoUBase):
    """Two classes: labels are 0/1 (truncated to integers), a score is class 1 when it is at
    least `threshold` (Keras compares with >=, unlike BinaryAccuracy's >)."""

    default_name = "binary_io_u"
    num_classes = 2
    target_class_ids = Key[list[int]](_read_class_ids, Derived(lambda cls: [0, 1]))
    ignore_class = None
    sparse_y_true = True
    sparse_y_pred = True
    axis = -1
    threshold = number(0.5)

    def _predicted_ids(self, y_pred: Tensor) -> Tensor:
        y_pred = y_pred if y_pred.dtype == torch.float32 else y_pred.to(torch.float32)
        return (y_pred >= self.threshold).to(torch.int64)
