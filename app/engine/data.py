"""Turning user arrays into float32 tensors, checked: shapes, lengths, finiteness, limits.

Also Keras's `validation_split` (the last fraction, taken before shuffling).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from app.engine.errors import DataError, Loc

MAX_ELEMENTS = 50_000_000


def to_array(value: Any, loc: Loc, *, max_elements: int = MAX_ELEMENTS) -> np.ndarray:
    """A finite float32 array from an ndarray or nested lists of numbers."""
    if value is None:
        raise DataError(loc, "is required")
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value, dtype=np.float32)
        except OverflowError:
            raise DataError(loc, "holds a number too large for float32") from None
        except (TypeError, ValueError) as exc:
            raise DataError(
                loc,
                "must be a number or nested lists of numbers with the same length at each "
                "depth (a ragged or non-numeric array was given)",
            ) from exc
    if arr.dtype.kind not in "fiub":
        raise DataError(loc, f"must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 0:
        raise DataError(loc, "must be an array with a batch dimension, got a scalar")
    if arr.size > max_elements:
        raise DataError(loc, f"has {arr.size} elements; the limit is {max_elements}")
    if arr.shape[0] == 0:
        raise DataError(loc, "must not be empty")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise DataError((*loc, *bad), "values must be finite (NaN or infinity found)")
    return arr


def check_input_shape(x: np.ndarray, expected: Sequence[int | None], loc: Loc) -> None:
    """x's shape must match the model's input shape (batch dimension free)."""
    want = tuple(expected)
    if x.ndim != len(want) or any(
        e is not None and e != got for e, got in zip(want[1:], x.shape[1:], strict=False)
    ):
        shown = ", ".join("null" if d is None else str(d) for d in want)
        raise DataError(loc, f"expected shape [{shown}] (batch first), got {list(x.shape)}")


def check_same_length(arrays: Sequence[tuple[Loc, np.ndarray | None]]) -> None:
    present = [(loc, a) for loc, a in arrays if a is not None]
    if not present:
        return
    first_loc, first = present[0]
    for loc, arr in present[1:]:
        if arr.shape[0] != first.shape[0]:
            raise DataError(
                loc,
                f"has {arr.shape[0]} samples but {'.'.join(map(str, first_loc))} has "
                f"{first.shape[0]}; they must have the same length",
            )


def check_sample_weight(sw: np.ndarray, loc: Loc) -> None:
    if sw.ndim != 1:
        raise DataError(loc, f"must be one weight per sample, shape (N,), got {list(sw.shape)}")
    if np.any(sw < 0):
        raise DataError(loc, "weights must not be negative")


@dataclass
class Arrays:
    """One set of tensors on the compute device: inputs, targets and optional sample weights."""

    x: torch.Tensor
    y: torch.Tensor | None = None
    sample_weight: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.x.shape[0])

    @classmethod
    def from_numpy(
        cls,
        x: np.ndarray,
        y: np.ndarray | None,
        sample_weight: np.ndarray | None,
        device: torch.device,
    ) -> Arrays:
        def put(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else torch.as_tensor(a, dtype=torch.float32).to(device)

        tx = put(x)
        assert tx is not None
        return cls(tx, put(y), put(sample_weight))

    def take(self, index: torch.Tensor | slice) -> Arrays:
        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index]

        x = pick(self.x)
        assert x is not None
        return Arrays(x, pick(self.y), pick(self.sample_weight))


def validation_split_at(n: int, validation_split: float, loc: Loc) -> int:
    """Keras's split point: training is [:split_at], validation the last n - split_at samples."""
    split_at = math.floor(n * (1.0 - validation_split))
    if split_at == 0 or split_at == n:
        raise DataError(
            loc,
            f"validation_split={validation_split} leaves {split_at} training and {n - split_at} "
            f"validation samples out of {n}; both must be non-empty",
        )
    return split_at
