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


Shape = tuple[int | None, ...]


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
    """One weight per sample (N,), or per step (N, T, ...) for sequence outputs (Keras's
    temporal weights; checked against the output when its shape is known)."""
    if np.any(sw < 0):
        raise DataError(loc, "weights must not be negative")


def _structured(value: Any, names: list[str], loc: Loc, what: str) -> list[tuple[Any, Loc]]:
    """Per-input or per-output values: an object keyed by name, a list in order (several), or
    the one array (a model with one input or output)."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise DataError((*loc, unknown[0]), f"is not a model {what}; they are {names}")
        return [(value.get(name), (*loc, name)) for name in names]
    if len(names) == 1:
        return [(value, loc)]
    if not isinstance(value, list | tuple) or len(value) != len(names):
        raise DataError(
            loc,
            f"the model has {len(names)} {what}s {names}: give an object keyed by {what} name "
            f"or a list of {len(names)} arrays in that order",
        )
    return [(v, (*loc, i)) for i, v in enumerate(value)]


@dataclass
class XY:
    """Checked host arrays: one per model input, and per output its labels and sample weights
    (None where absent)."""

    x: list[np.ndarray]
    y: list[np.ndarray | None]
    sample_weight: list[np.ndarray | None]

    @property
    def size(self) -> int:
        return int(self.x[0].shape[0])

    def split(self, at: int) -> tuple[XY, XY]:
        def cut(arrays: list[Any], part: slice) -> list[Any]:
            return [None if a is None else a[part] for a in arrays]

        head, tail = slice(None, at), slice(at, None)
        return (
            XY(cut(self.x, head), cut(self.y, head), cut(self.sample_weight, head)),
            XY(cut(self.x, tail), cut(self.y, tail), cut(self.sample_weight, tail)),
        )

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Flat named arrays for storage (`x.0`, `y.1`, `sample_weight.0`, ...)."""
        out: dict[str, np.ndarray] = {}
        for key in ("x", "y", "sample_weight"):
            for i, a in enumerate(getattr(self, key)):
                if a is not None:
                    out[f"{prefix}{key}.{i}"] = a
        return out

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], n_inputs: int, n_outputs: int, prefix: str = ""
    ) -> XY | None:
        if f"{prefix}x.0" not in arrays:
            return None
        x = [arrays[f"{prefix}x.{i}"] for i in range(n_inputs)]
        y = [arrays.get(f"{prefix}y.{i}") for i in range(n_outputs)]
        sw = [arrays.get(f"{prefix}sample_weight.{i}") for i in range(n_outputs)]
        return cls(x, y, sw)


def read_inputs(x: Any, names: list[str], shapes: list[Shape], loc: Loc) -> list[np.ndarray]:
    """The model's inputs from x (one array, a list in input order or an object keyed by input
    name), each checked against its input shape."""
    out = []
    for (value, vloc), shape in zip(_structured(x, names, loc, "input"), shapes, strict=True):
        arr = to_array(value, vloc)
        check_input_shape(arr, shape, vloc)
        out.append(arr)
    return out


def read_targets(y: Any, names: list[str], loc: Loc) -> list[np.ndarray | None]:
    """Labels per output (an object keyed by output name may leave out outputs with no loss)."""
    return [None if v is None and isinstance(y, dict) else to_array(v, vloc)
            for v, vloc in _structured(y, names, loc, "output")]  # fmt: skip


def read_sample_weights(sw: Any, names: list[str], loc: Loc) -> list[np.ndarray | None]:
    """One weight per sample, for every output; or, for a model with several outputs, one
    entry per output: an object keyed by output name, or a list with one array per output (as
    Keras reads a list there)."""
    if sw is None:
        return [None] * len(names)
    per_output = isinstance(sw, dict) or (
        len(names) > 1 and isinstance(sw, list | tuple) and len(sw) == len(names)
        and all(v is None or isinstance(v, list | tuple | np.ndarray) for v in sw)
    )  # fmt: skip
    parts = _structured(sw, names, loc, "output") if per_output else [(sw, loc)] * len(names)
    out: list[np.ndarray | None] = []
    for value, vloc in parts:
        if value is None:
            out.append(None)
            continue
        arr = to_array(value, vloc)
        check_sample_weight(arr, vloc)
        out.append(arr)
    return out


@dataclass
class Arrays:
    """One set of tensors on the compute device: inputs, and per output targets and sample
    weights."""

    x: list[torch.Tensor]
    y: list[torch.Tensor | None]
    sample_weight: list[torch.Tensor | None]

    @property
    def size(self) -> int:
        return int(self.x[0].shape[0])

    @property
    def inputs(self) -> torch.Tensor | list[torch.Tensor]:
        """What the model is called with: the tensor itself for a one-input model."""
        return self.x[0] if len(self.x) == 1 else self.x

    @classmethod
    def from_numpy(cls, data: XY, device: torch.device) -> Arrays:
        def put(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else torch.as_tensor(a, dtype=torch.float32).to(device)

        xs = [torch.as_tensor(a, dtype=torch.float32).to(device) for a in data.x]
        return cls(xs, [put(a) for a in data.y], [put(a) for a in data.sample_weight])

    def take(self, index: torch.Tensor | slice) -> Arrays:
        def pick(ts: list[Any]) -> list[Any]:
            return [None if t is None else t[index] for t in ts]

        return Arrays(pick(self.x), pick(self.y), pick(self.sample_weight))


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


def check_weight_shape(
    sw: np.ndarray | None, out: tuple[int, ...], mask: tuple[int, ...] | None, loc: Loc
) -> None:
    """Per-sample weights (N,) for any output; per-step weights must match the output's
    leading axes, and an output with a Keras mask takes one weight per masked entry (Keras
    folds the mask into the weights in place, so (N,) weights and an (N, T) mask do not mix)."""
    if sw is None:
        return
    if mask is not None and sw.shape[1:] != mask[1:]:
        want = ["N", *mask[1:]]
        raise DataError(loc, f"the output carries a mask of shape {want}: give one weight per "
                        f"masked entry, shape {want}, got {list(sw.shape)}")  # fmt: skip
    if sw.ndim > 1 and sw.ndim >= len(out):
        shown = ["N", *out[1:]]
        raise DataError(loc, f"per-step weights need fewer axes than the output {shown} (a "
                        f"loss reduces its last axis), got {list(sw.shape)}")  # fmt: skip
    if sw.ndim > 1 and tuple(sw.shape[1:]) != tuple(out[1 : sw.ndim]):
        raise DataError(loc, f"per-step weights must match the output's leading axes "
                        f"{['N', *out[1 : sw.ndim]]}, got {list(sw.shape)}")  # fmt: skip
