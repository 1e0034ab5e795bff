"""Keras's shape and reduction rules that losses (and metrics) are built from: rank alignment
(`squeeze_or_expand_to_same_rank`), no-NaN division, sample-weighted batch reduction, Keras masks
folded into sample weights, the "crossentropy"/"accuracy" choice by shapes, the float32 dtype
check, and the label-versus-output shape checks that run before training.

Nothing here knows a particular loss; `app.engine.losses` re-exports the names other modules
import from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.scalars import scalar_like

Tensor = torch.Tensor
Shape = tuple[int, ...]
T = TypeVar("T")


def check_float32_dtype(config: Mapping[str, Any], loc: Loc) -> None:
    """Accept `dtype` only when it says float32 (a string or Keras's DTypePolicy object)."""
    dtype = config.get("dtype")
    name = dtype
    if isinstance(dtype, Mapping):
        inner = dtype.get("config")
        name = inner.get("name") if isinstance(inner, Mapping) else None
    if dtype is not None and name != "float32":
        raise ConfigError((*loc, "dtype"), f"only float32 is supported yet, got {dtype!r}")


def same_rank_shapes(s1: Shape, s2: Shape, expand_rank_1: bool = True) -> tuple[Shape, Shape]:
    """Keras's `squeeze_or_expand_to_same_rank` on shapes: when the ranks differ by one and the
    longer shape ends in 1, expand a rank-1 partner, else squeeze the longer one."""
    if len(s1) == len(s2) + 1 and s1[-1] == 1:
        return (s1, (*s2, 1)) if len(s2) == 1 and expand_rank_1 else (s1[:-1], s2)
    if len(s2) == len(s1) + 1 and s2[-1] == 1:
        return ((*s1, 1), s2) if len(s1) == 1 and expand_rank_1 else (s1, s2[:-1])
    return s1, s2


def squeeze_or_expand_to_same_rank(
    x1: Tensor, x2: Tensor, expand_rank_1: bool = True
) -> tuple[Tensor, Tensor]:
    s1, s2 = same_rank_shapes(x1.shape, x2.shape, expand_rank_1)
    # A reshape to the same shape is only an alias: skip it (this runs several times a batch).
    return (x1 if s1 == x1.shape else x1.reshape(s1)), (x2 if s2 == x2.shape else x2.reshape(s2))


def binary_crossentropy_elems(clipped: Tensor, y_true: Tensor) -> Tensor:
    """Keras's elementwise binary crossentropy of probabilities already clipped to
    [eps, 1 - eps], with a NaN probability giving a NaN loss (a diverged model's, as Keras's
    other backends give) where torch's kernel would refuse it (on a GPU, by a device assert)."""
    nan = torch.isnan(clipped)
    elems = F.binary_cross_entropy(torch.where(nan, 0.5, clipped), y_true, reduction="none")
    return torch.where(nan, clipped, elems)


def divide_no_nan(x: Tensor, y: Tensor) -> Tensor:
    """x / y, and 0 where y == 0 (Keras's op; the divisor stays a device tensor so the division
    rounds as Keras's does)."""
    zero = y == 0
    safe = torch.where(zero, scalar_like(1.0, y), y)
    return torch.where(zero, scalar_like(0.0, x), x / safe)


def reduce_weighted_values(values: Tensor, sample_weight: Tensor | None, reduction: str) -> Tensor:
    """Keras's `reduce_weighted_values` without masks: weight, then sum and divide."""
    weight = None
    if sample_weight is not None:
        weight = torch.as_tensor(sample_weight).to(device=values.device, dtype=values.dtype)
        values, weight = squeeze_or_expand_to_same_rank(values, weight)
        # Keras would broadcast a wider weight silently (e.g. (N,) against (N, N) values).
        if values.dim() > 0 and not _broadcasts_to(weight.shape, values.shape):
            raise DataError(
                ("sample_weight",),
                f"shape {tuple(weight.shape)} does not fit per-sample loss values "
                f"of shape {tuple(values.shape)}",
            )
        values = values * weight
    if values.dim() == 0:
        return values
    total = torch.sum(values)
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and weight is not None:
        return divide_no_nan(total, torch.sum(weight))
    # Keras divides by the count as a float32 device tensor (a CPU scalar would round otherwise);
    # divide_no_nan by a count known to be nonzero is exactly that division.
    count = values.numel()
    divisor = scalar_like(float(count), total)
    return total / divisor if count else divide_no_nan(total, divisor)


def apply_mask(sample_weight: Tensor | None, mask: Tensor, reduction: str, like: Tensor) -> Tensor:
    """Keras's `apply_mask`: fold a Keras mask (True where an output counts) into the sample
    weights. For the "sum_over_batch_size" and "mean" reductions a counted entry weighs
    `total / valid` (so the reduction, which divides by every entry, averages over the counted
    ones); otherwise the mask is a 0/1 weight. Float32 tensors on `like`'s device."""
    keep = mask.to(device=like.device, dtype=torch.bool)
    if reduction in ("sum_over_batch_size", "mean"):
        total = scalar_like(float(keep.numel()), like)
        valid = torch.sum(keep.to(torch.float32))
        weight = torch.where(keep, divide_no_nan(total, valid), scalar_like(0.0, total))
    else:
        weight = keep.to(torch.float32)
    if sample_weight is None:
        return weight
    sw = torch.as_tensor(sample_weight).to(device=like.device, dtype=torch.float32)
    weight, sw = squeeze_or_expand_to_same_rank(weight, sw)
    # Keras multiplies the weights by the mask in place, so the weights' shape must hold both.
    if not _broadcasts_to(weight.shape, sw.shape):
        raise DataError(
            ("sample_weight",),
            f"shape {tuple(sw.shape)} cannot be combined with the model output's mask of shape "
            f"{tuple(weight.shape)}; give one weight per masked entry, shape {tuple(weight.shape)}",
        )
    return sw * weight


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def pick_by_shape(y_true_shape: Shape, y_pred_shape: Shape, choices: tuple[T, T, T]) -> T:
    """Keras's `is_binary_or_sparse_categorical` rule (for "crossentropy" and "accuracy"):
    choices are (binary, sparse categorical, categorical); shapes include the batch axis."""
    t_last = y_true_shape[-1] if y_true_shape else None
    p_last = y_pred_shape[-1] if y_pred_shape else None
    if p_last == 1:
        return choices[0]
    sparse = len(y_true_shape) < len(y_pred_shape) or (t_last == 1 and (p_last or 0) > 1)
    return choices[1] if sparse else choices[2]


# Label checks: DataErrors raised before training (or, for `require_same_shape`, by a loss's
# formula), worded for the API's callers.


def numeric_labels(y: np.ndarray, loc: Loc) -> np.ndarray:
    if y.dtype.kind not in "biuf":
        raise DataError(loc, f"labels must be numbers, received dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise DataError(loc, "labels must be finite numbers, received NaN or infinity")
    return y


def misfit(y_shape: Shape, out_shape: Shape, loc: Loc, expected: str) -> DataError:
    return DataError(
        loc,
        f"labels of shape {y_shape} do not fit model outputs of shape {out_shape}; "
        f"expected {expected}",
    )


def check_same_shape(y_shape: Shape, out_shape: Shape, loc: Loc, hint: str = "") -> None:
    if len(set(same_rank_shapes(y_shape, out_shape))) != 1:
        raise misfit(y_shape, out_shape, loc, f"labels of shape {out_shape}{hint}")


def require_same_shape(y_true: Tensor, y_pred: Tensor) -> None:
    # Keras's backend ops refuse mismatched shapes rather than broadcasting.
    if y_true.shape != y_pred.shape:
        shapes = tuple(y_true.shape), tuple(y_pred.shape)
        raise misfit(*shapes, (), f"labels of shape {shapes[1]}")


def check_axis(axis: int, out_shape: Shape, loc: Loc) -> None:
    rank = len(out_shape)
    if rank >= 2 and (not -rank <= axis < rank or axis % rank == 0):
        raise DataError(loc, f"the loss's axis {axis} is not a class axis of outputs {out_shape}")


def check_unit_interval(y: np.ndarray, loc: Loc, what: str) -> None:
    """Labels of a binary loss (probabilities of class 1) must lie in [0, 1]."""
    if y.size and (y.min() < 0 or y.max() > 1):
        raise DataError(
            loc, f"{what} expects labels in [0, 1], received values from {y.min()} to {y.max()}"
        )


def one_hot_hint(y_shape: Shape, out_shape: Shape, sparse_loss: str | None = None) -> str:
    """A hint for a one-hot loss given integer class labels (N,) or (N, 1) against (N, C)."""
    if (
        len(out_shape) >= 2
        and out_shape[-1] > 1
        and (len(y_shape) < len(out_shape) or y_shape[-1:] == (1,))
    ):
        sparse = f"; for integer class labels use {sparse_loss}" if sparse_loss else ""
        return f" (one-hot){sparse}"
    return ""
