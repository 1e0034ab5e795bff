"""Keras 3's IoU metrics on torch: IoU, MeanIoU, OneHotIoU, OneHotMeanIoU and BinaryIoU, their
configs (Keras's, dtype "int32" by default) and a request-time check of their labels. The
confusion matrix and the numbers are in `app.engine.metrics.iou_state`.

IoU and MeanIoU expect class ids as outputs by default, not scores (`sparse_y_pred`);
BinaryIoU predicts class 1 where the score is >= `threshold` (unlike BinaryAccuracy's >).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.config.readers import get_bool, get_float, get_int, get_str
from app.engine.config.registry import known_keys
from app.engine.losses import reduction as loss_utils
from app.engine.metrics.base import METRICS, Metric
from app.engine.metrics.iou_state import IoUMatrix, misfit

Tensor = torch.Tensor
Shape = tuple[int, ...]
MAX_CLASSES = 4096  # the matrix is num_classes**2 int64 counts: 128 MiB at this size
_DTYPES = ("int32", "float32")


class _IoUBase(IoUMatrix):
    """Keras's configs: `_config_attrs` are the constructor arguments each class writes."""

    _config_attrs: ClassVar[tuple[str, ...]]
    _sparse_pred_default: ClassVar[bool] = True

    # -- config --------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        attrs = {key: getattr(self, key) for key in self._config_attrs}
        return {"name": self.name, "dtype": self.dtype, **attrs}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc) -> Metric:
        config = known_keys(config, ("name", "dtype", *cls._config_attrs), loc)
        name = get_str(config, "name", loc, cls.default_name)
        return cls(name=name, dtype=_parse_dtype(config, loc), **cls._parse(config, loc))

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "num_classes" in cls._config_attrs:
            out["num_classes"] = get_int(config, "num_classes", loc, min_value=1,
                                         max_value=MAX_CLASSES)  # fmt: skip
        if "target_class_ids" in cls._config_attrs:
            limit = out.get("num_classes", 2)
            out["target_class_ids"] = _class_ids(config, loc, limit, cls._default_targets())
        if "ignore_class" in cls._config_attrs:
            out["ignore_class"] = get_int(config, "ignore_class", loc, None)
        if "sparse_y_true" in cls._config_attrs:
            out["sparse_y_true"] = get_bool(config, "sparse_y_true", loc, True)
        if "sparse_y_pred" in cls._config_attrs:
            default = cls._sparse_pred_default
            out["sparse_y_pred"] = get_bool(config, "sparse_y_pred", loc, default)
        if "axis" in cls._config_attrs:
            out["axis"] = get_int(config, "axis", loc, -1)
        return out

    @classmethod
    def _default_targets(cls) -> list[int] | None:
        return None  # required

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


def _parse_dtype(config: Mapping[str, Any], loc: Loc) -> str:
    dtype = config.get("dtype")
    name = dtype
    if isinstance(dtype, Mapping):  # Keras's DTypePolicy object
        inner = dtype.get("config")
        name = inner.get("name") if isinstance(inner, Mapping) else None
    if dtype is None:
        return "int32"
    if name not in _DTYPES:
        raise ConfigError((*loc, "dtype"), f"must be one of {list(_DTYPES)}, got {dtype!r}")
    return str(name)


def _class_ids(config: Mapping[str, Any], loc: Loc, limit: int, default: Any) -> list[int]:
    value = config.get("target_class_ids", default)
    key_loc = (*loc, "target_class_ids")
    if value is None:
        raise ConfigError(key_loc, "is required")
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(key_loc, f"must be a non-empty list of class ids, got {value!r}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < limit:
            raise ConfigError(key_loc, f"class ids must be integers in [0, {limit}), got {v!r}")
    return list(value)


@METRICS.register("IoU", "io_u")
class IoU(_IoUBase):
    default_name = "io_u"
    _config_attrs = ("num_classes", "target_class_ids", "ignore_class", "sparse_y_true",
                     "sparse_y_pred", "axis")  # fmt: skip


@METRICS.register("MeanIoU", "mean_io_u")
class MeanIoU(_IoUBase):
    """IoU over every class."""

    default_name = "mean_io_u"
    _config_attrs: ClassVar[tuple[str, ...]] = (
        "num_classes", "ignore_class", "sparse_y_true", "sparse_y_pred", "axis",
    )  # fmt: skip

    def __init__(self, name: str | None = None, *, num_classes: int, **kwargs: Any) -> None:
        kwargs.setdefault("target_class_ids", range(num_classes))
        super().__init__(name, num_classes=num_classes, **kwargs)


@METRICS.register("OneHotIoU", "one_hot_io_u")
class OneHotIoU(_IoUBase):
    """IoU with one-hot labels (and, by default, scores as outputs)."""

    default_name = "one_hot_io_u"
    _sparse_pred_default = False
    _config_attrs = ("num_classes", "target_class_ids", "ignore_class", "sparse_y_pred", "axis")

    def __init__(self, name: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("sparse_y_pred", False)
        super().__init__(name, sparse_y_true=False, **kwargs)


@METRICS.register("OneHotMeanIoU", "one_hot_mean_io_u")
class OneHotMeanIoU(MeanIoU):
    """MeanIoU with one-hot labels (and, by default, scores as outputs)."""

    default_name = "one_hot_mean_io_u"
    _sparse_pred_default = False
    _config_attrs = ("num_classes", "ignore_class", "sparse_y_pred", "axis")

    def __init__(self, name: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("sparse_y_pred", False)
        super().__init__(name, sparse_y_true=False, **kwargs)


@METRICS.register("BinaryIoU", "binary_io_u")
class BinaryIoU(_IoUBase):
    """Two classes: labels are 0/1 (truncated to integers), a score is class 1 when it is at
    least `threshold` (Keras compares with >=, unlike BinaryAccuracy's >)."""

    default_name = "binary_io_u"
    _config_attrs = ("target_class_ids", "threshold")

    def __init__(
        self,
        name: str | None = None,
        *,
        target_class_ids: Sequence[int] = (0, 1),
        threshold: float = 0.5,
        dtype: str = "int32",
    ) -> None:
        super().__init__(name, num_classes=2, target_class_ids=target_class_ids, dtype=dtype)
        self.threshold = threshold

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            **super()._parse(config, loc),
            "threshold": get_float(config, "threshold", loc, 0.5),
        }

    @classmethod
    def _default_targets(cls) -> list[int] | None:
        return [0, 1]

    def _predicted_ids(self, y_pred: Tensor) -> Tensor:
        y_pred = y_pred if y_pred.dtype == torch.float32 else y_pred.to(torch.float32)
        return (y_pred >= self.threshold).to(torch.int64)
