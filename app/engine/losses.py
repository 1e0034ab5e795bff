"""Keras 3 losses on torch: string resolution (`get`), the squared/absolute error and
crossentropy losses, and (re-exported) the Loss base, the LOSSES registry and every other loss.

Formulas follow Keras's torch backend op for op (probability clipping to [1e-7, 1 - 1e-7],
renormalisation of categorical probabilities, `squeeze_or_expand_to_same_rank`), so values match
Keras to float32 rounding. The base class lives in `app.engine.loss_base`, the shape, reduction and
label-check helpers in `app.engine.loss_utils`, the other regression losses in
`app.engine.losses_regression` and the other probabilistic, hinge and segmentation losses in
`app.engine.losses_probabilistic`; importing this module registers them all. A new loss is a
subclass with `fn`, `_check` and, if it has arguments, `hyperparameters` and `_parse`, registered
under Keras's class name, function name and aliases.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from app.engine.errors import ConfigError, DataError, Loc
from app.engine.loss_base import EPSILON as EPSILON
from app.engine.loss_base import LOSSES as LOSSES
from app.engine.loss_base import REDUCTIONS as REDUCTIONS
from app.engine.loss_base import Loss as Loss
from app.engine.loss_utils import (
    Shape,
    binary_crossentropy_elems,
    check_axis,
    check_same_shape,
    check_unit_interval,
    misfit,
    one_hot_hint,
    pick_by_shape,
    require_same_shape,
    same_rank_shapes,
)
from app.engine.loss_utils import divide_no_nan as divide_no_nan  # re-exported, still public
from app.engine.loss_utils import (
    reduce_weighted_values as reduce_weighted_values,
)
from app.engine.loss_utils import (
    squeeze_or_expand_to_same_rank as squeeze_or_expand_to_same_rank,
)

# Importing the other loss modules registers their losses; their classes are public here too.
from app.engine.losses_hinge import (  # noqa: F401
    CategoricalHinge,
    Hinge,
    SquaredHinge,
)
from app.engine.losses_metric_learning import Circle  # noqa: F401
from app.engine.losses_probabilistic import (  # noqa: F401
    BinaryFocalCrossentropy,
    CategoricalFocalCrossentropy,
    KLDivergence,
    Poisson,
)
from app.engine.losses_regression import (  # noqa: F401
    CosineSimilarity,
    Huber,
    LogCosh,
    MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError,
)
from app.engine.losses_segmentation import (  # noqa: F401
    Dice,
    Tversky,
)
from app.engine.losses_sequence import CTC  # noqa: F401
from app.engine.params import get_bool, get_float, get_int
from app.engine.scalars import scalar_like

Tensor = torch.Tensor


@LOSSES.register("MeanSquaredError", "mean_squared_error", "mse", "MSE")
class MeanSquaredError(Loss):
    default_name = "mean_squared_error"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return torch.mean(torch.square(y_true - y_pred), dim=-1)


@LOSSES.register("MeanAbsoluteError", "mean_absolute_error", "mae", "MAE")
class MeanAbsoluteError(Loss):
    default_name = "mean_absolute_error"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return torch.mean(torch.abs(y_true - y_pred), dim=-1)


class _Crossentropy(Loss):
    hyperparameters = {"from_logits": False, "label_smoothing": 0.0, "axis": -1}
    from_logits: bool
    label_smoothing: float
    axis: int

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        smoothing = get_float(config, "label_smoothing", loc, 0.0, min_value=0.0, max_value=1.0)
        return {
            "from_logits": get_bool(config, "from_logits", loc, False),
            "label_smoothing": smoothing,
            "axis": get_int(config, "axis", loc, -1),
        }


@LOSSES.register("BinaryCrossentropy", "binary_crossentropy", "bce", "BCE")
class BinaryCrossentropy(_Crossentropy):
    default_name = "binary_crossentropy"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        require_same_shape(y_true, y_pred)
        if self.from_logits:
            elems = F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")
        else:
            clipped = torch.clip(y_pred, EPSILON, 1.0 - EPSILON)
            elems = binary_crossentropy_elems(clipped, y_true)
        return torch.mean(elems, dim=self.axis)

    def _check(self, y: np.ndarray, out_shape: Shape, loc: Loc) -> None:
        check_same_shape(y.shape, out_shape, loc)
        check_axis(self.axis, same_rank_shapes(y.shape, out_shape)[1], loc)
        check_unit_interval(y, loc, "binary crossentropy")


@LOSSES.register("CategoricalCrossentropy", "categorical_crossentropy")
class CategoricalCrossentropy(_Crossentropy):
    default_name = "categorical_crossentropy"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        if self.label_smoothing:
            # Keras divides by a float32 tensor holding the class count: keep that rounding.
            classes = scalar_like(float(y_true.shape[-1]), y_pred)
            y_true = y_true * (1.0 - self.label_smoothing) + (self.label_smoothing / classes)
        require_same_shape(y_true, y_pred)
        if self.from_logits:
            log_prob = F.log_softmax(y_pred, dim=self.axis)
        else:
            probs = y_pred / torch.sum(y_pred, dim=self.axis, keepdim=True)
            log_prob = torch.log(torch.clip(probs, EPSILON, 1.0 - EPSILON))
        return -torch.sum(y_true * log_prob, dim=self.axis)

    def _check(self, y: np.ndarray, out_shape: Shape, loc: Loc) -> None:
        hint = one_hot_hint(y.shape, out_shape, "sparse_categorical_crossentropy")
        check_same_shape(y.shape, out_shape, loc, hint)
        check_axis(self.axis, same_rank_shapes(y.shape, out_shape)[1], loc)


@LOSSES.register("SparseCategoricalCrossentropy", "sparse_categorical_crossentropy")
class SparseCategoricalCrossentropy(Loss):
    default_name = "sparse_categorical_crossentropy"
    # Keras accepts `axis` but leaves it out of its config.
    hyperparameters = {"from_logits": False, "ignore_class": None}
    _also_accepted = ("axis",)
    from_logits: bool

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        if config.get("ignore_class") is not None:
            raise ConfigError((*loc, "ignore_class"), "ignore_class is not supported yet")
        if get_int(config, "axis", loc, -1) != -1:
            raise ConfigError((*loc, "axis"), "only axis -1 is supported yet")
        return {"from_logits": get_bool(config, "from_logits", loc, False)}

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        target = y_true.to(torch.long)
        if target.dim() == y_pred.dim() and target.shape[-1] == 1:
            target = target.squeeze(-1)
        if tuple(target.shape) != tuple(y_pred.shape[:-1]):
            shapes = tuple(y_true.shape), tuple(y_pred.shape)
            raise misfit(*shapes, (), f"labels of shape {shapes[1][:-1]}")
        output = y_pred
        if output.dim() == 1:
            output, target = output.unsqueeze(0), target.unsqueeze(0)
        elif output.dim() > 2:
            # torch's cross entropy wants the class axis at position 1.
            output = output.movedim(-1, 1)
        if self.from_logits:
            result = F.cross_entropy(output, target, reduction="none")
        else:
            probs = output / torch.sum(output, dim=1, keepdim=True)
            log_prob = torch.log(torch.clip(probs, EPSILON, 1.0 - EPSILON))
            result = F.nll_loss(log_prob, target, reduction="none")
        return result.squeeze(0) if y_pred.dim() == 1 else result

    def _check(self, y: np.ndarray, out_shape: Shape, loc: Loc) -> None:
        ys, os = same_rank_shapes(y.shape, out_shape)
        if len(ys) == len(os) and ys and ys[-1] == 1:
            ys = ys[:-1]
        if not os or ys != os[:-1]:
            both = f"{out_shape[:-1]} or {(*out_shape[:-1], 1)}"
            raise misfit(y.shape, out_shape, loc, f"integer class labels of shape {both}")
        classes = out_shape[-1]
        if y.size and np.issubdtype(y.dtype, np.floating) and (y != np.floor(y)).any():
            raise DataError(loc, "sparse categorical labels must be integers, received fractions")
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise DataError(
                loc,
                f"sparse categorical labels must be class indices in [0, {classes}), received "
                f"values from {y.min()} to {y.max()}",
            )


_CROSSENTROPY_STRINGS = ("crossentropy", "ce")


def get(
    identifier: Any,
    loc: Loc,
    *,
    y_true_shape: Shape | None = None,
    y_pred_shape: Shape | None = None,
) -> Loss:
    """Resolve a loss as Keras's compile does. A string that names a function or alias (not a
    class) becomes the loss's name, as Keras's wrapper does: "mse" is named "mse"."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _CROSSENTROPY_STRINGS:
        if y_true_shape is None or y_pred_shape is None:
            raise ConfigError(
                loc, f"{identifier!r} is chosen from the label and output shapes, not known here"
            )
        choices = (BinaryCrossentropy, SparseCategoricalCrossentropy, CategoricalCrossentropy)
        cls: type[Loss] = pick_by_shape(tuple(y_true_shape), tuple(y_pred_shape), choices)
        return cls.from_config({"name": identifier}, loc)
    found, config, cloc = LOSSES.parse(identifier, loc)
    loss = found.from_config(config, cloc)
    if isinstance(identifier, str) and identifier != LOSSES.canonical_name(found):
        loss.name = identifier
    return loss
