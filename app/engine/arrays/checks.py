"""Turning user arrays into tensors, checked: shapes, lengths, finiteness, limits.

Labels and sample weights are float32. An input becomes its InputLayer's dtype as Keras converts
it, in two steps kept here alone. On the host an input is what Keras's array adapter holds: float
data as float32, integers and booleans as they are (JSON integers as int64, so an integer input
never loses ids above 2**24 on the way), every value checked to fit the input's dtype. On the
device `cast_input` converts a batch to the input's dtype; batches of inline arrays and batches
read from stored files both pass through it, so they agree bit for bit.

Also Keras's `validation_split` (the last fraction, taken before shuffling).
"""

from __future__ import annotations

import contextlib
import math
import mmap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from app.engine.arrays.dtypes import HALF_FLOATS, dtype_name, is_integer
from app.engine.config.errors import DataError, Loc

MAX_ELEMENTS = 50_000_000
# The smallest magnitudes that round to infinity in float16 and bfloat16.
_HALF_OVERFLOW = {torch.float16: 65520.0, torch.bfloat16: float((2 - 2**-8) * 2**127)}
_RAGGED = (
    "must be a number or nested lists of numbers with the same length at each depth (a ragged "
    "or non-numeric array was given)"
)


def to_array(
    value: Any, loc: Loc, *, max_elements: int = MAX_ELEMENTS, dtype: torch.dtype = torch.float32
) -> np.ndarray:
    """A finite array from an ndarray or nested lists of numbers: float32, or for an input of
    another `dtype`, the host array of `cast_input` (floats as float32, integers and booleans
    as they are) with every value within that dtype's range."""
    if value is None:
        raise DataError(loc, "is required")
    if isinstance(value, np.memmap):
        return _mapped(value, loc, dtype)
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value, dtype=np.float32 if dtype == torch.float32 else None)
        except OverflowError:
            raise DataError(loc, "holds a number too large for float32") from None
        except (TypeError, ValueError) as exc:
            raise DataError(loc, _RAGGED) from exc
    if arr.dtype.kind not in "fiub":
        if arr.dtype.kind == "O" and not isinstance(value, np.ndarray):
            raise DataError(loc, f"{_RAGGED}, or an integer too large for int64")
        raise DataError(loc, f"must be numeric, got dtype {arr.dtype}")
    if dtype == torch.float32 or arr.dtype.kind == "f":
        arr = arr.astype(np.float32, copy=False)  # Keras's array adapter: floats as float32
    if arr.ndim == 0:
        raise DataError(loc, "must be an array with a batch dimension, got a scalar")
    if arr.size > max_elements:
        raise DataError(loc, f"has {arr.size} elements; the limit is {max_elements}")
    if arr.shape[0] == 0:
        raise DataError(loc, "must not be empty")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise DataError((*loc, *bad), "values must be finite (NaN or infinity found)")
    if dtype != torch.float32:
        check_input_values(arr, dtype, loc)
        if arr.dtype.kind == "u" and arr.itemsize > 1:
            arr = arr.astype(np.int64)  # torch has no arithmetic for wider unsigned types
    return arr


CHUNK_BYTES = 32 << 20


def for_chunks(arr: np.ndarray, loc: Loc, check: Callable[[np.ndarray, Loc], None]) -> None:
    """Run `check` over `arr` a slab of rows at a time (a memory map is never read whole into
    memory); a DataError's row index counts from the array's start."""
    row_bytes = max(1, arr.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64)))
    step = max(1, CHUNK_BYTES // row_bytes)
    for lo in range(0, int(arr.shape[0]), step):
        try:
            check(np.asarray(arr[lo : lo + step]), loc)
            release_pages(arr)
        except DataError as exc:
            at = len(loc)
            row = exc.loc[at] if len(exc.loc) > at and exc.loc[:at] == tuple(loc) else None
            if isinstance(row, int):
                raise DataError((*loc, row + lo, *exc.loc[at + 1 :]), exc.message) from None
            raise


def release_pages(arr: np.ndarray) -> None:
    """Hand a memory map's pages back to the kernel (they stay in the page cache): a scan over
    a stored dataset leaves the process's resident memory as it was."""
    mm = getattr(arr, "_mmap", None)
    if isinstance(mm, mmap.mmap):
        with contextlib.suppress(OSError, ValueError):
            mm.madvise(mmap.MADV_DONTNEED)


def _mapped(arr: np.memmap, loc: Loc, dtype: torch.dtype) -> np.ndarray:
    """A memory-mapped array (a stored dataset's rows) stays where it is, in its stored dtype,
    and is read batch by batch: its values were checked finite when it was stored, and what
    depends on the model (an integer input's range) is checked a slab at a time. Batches are
    cast on the device by `cast_input`, as an inline array's are."""
    if arr.dtype.kind not in "fiub":
        raise DataError(loc, f"must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise DataError(loc, "must be an array with at least one row")
    if dtype != torch.float32 and not (dtype.is_floating_point and dtype not in HALF_FLOATS):
        for_chunks(arr, loc, lambda part, ploc: check_input_values(part, dtype, ploc))
    return arr


def check_input_values(arr: np.ndarray, dtype: torch.dtype, loc: Loc) -> None:
    """Every value of a host input array must survive `cast_input` to `dtype`: into an integer
    type, within its range once truncated toward zero; into float16 or bfloat16, finite. (Keras
    would wrap such values around, or make them infinite; which, for floats, depends on the
    device.) A DataError names the first value that does not fit."""
    if dtype == torch.bool or (dtype.is_floating_point and dtype not in HALF_FLOATS):
        return
    if arr.dtype.kind == "b" or arr.size == 0:
        return
    if is_integer(dtype):
        info = torch.iinfo(dtype)
        if arr.dtype.kind == "f":
            values = np.trunc(arr.astype(np.float64))
            bad = (values < info.min) | (values >= float(info.max) + 1)  # powers of two: exact
        else:
            if int(arr.min()) >= info.min and int(arr.max()) <= info.max:
                return
            bad = (arr < info.min) | (arr > info.max)
        what = f"an integer in [{info.min}, {info.max}] (truncated toward zero)"
    else:
        bad = np.abs(arr.astype(np.float64)) >= _HALF_OVERFLOW[dtype]
        what = f"within {dtype_name(dtype)}'s range (it would become infinite)"
    if np.any(bad):
        where = np.argwhere(bad)[0].tolist()
        value = arr[tuple(where)].item()
        raise DataError(
            (*loc, *where),
            f"the input is {dtype_name(dtype)}: each value must be {what}, got {value!r}",
        )


def cast_input(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One batch of an input, on its device, as Keras's model receives it: a float tensor of
    another type than float32 becomes float32 first (Keras's array adapter does so to every
    float array), then the tensor is converted to `dtype` (into an integer type truncating
    toward zero, into bool nonzero as True). With float32, what labels and sample weights are
    read as. Inline arrays and batches from stored files both pass through here."""
    if tensor.is_floating_point() and tensor.dtype != torch.float32:
        tensor = tensor.to(torch.float32)
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def input_tensors(
    xs: Sequence[np.ndarray], dtypes: Sequence[torch.dtype], device: torch.device
) -> list[torch.Tensor]:
    """Host input arrays on the device, each converted to its input's dtype."""
    # A read-only array (a slice of a memory map) is copied: torch keeps no read-only tensors.
    return [
        cast_input(torch.as_tensor(a if a.flags.writeable else np.array(a)).to(device), d)
        for a, d in zip(xs, dtypes, strict=True)
    ]


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
    temporal weights; checked against the output when its shape is known). A stored dataset's
    weights are read a slab at a time."""
    if isinstance(sw, np.memmap):
        for_chunks(sw, loc, check_sample_weight)
    elif np.any(sw < 0):
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


def read_inputs(
    x: Any,
    names: list[str],
    shapes: list[Shape],
    loc: Loc,
    dtypes: Sequence[torch.dtype] | None = None,
) -> list[np.ndarray]:
    """The model's inputs from x (one array, a list in input order or an object keyed by input
    name), each checked against its input shape and read for its dtype (float32 where
    `dtypes` is None)."""
    out = []
    parts = _structured(x, names, loc, "input")
    for i, ((value, vloc), shape) in enumerate(zip(parts, shapes, strict=True)):
        arr = to_array(value, vloc, dtype=torch.float32 if dtypes is None else dtypes[i])
        check_input_shape(arr, shape, vloc)
        out.append(arr)
    return out


def read_targets(y: Any, names: list[str], loc: Loc) -> list[np.ndarray | None]:
    """Labels per output (an object keyed by output name may leave out outputs with no loss)."""
    return [
        None if v is None and isinstance(y, dict) else to_array(v, vloc)
        for v, vloc in _structured(y, names, loc, "output")
    ]


def read_sample_weights(sw: Any, names: list[str], loc: Loc) -> list[np.ndarray | None]:
    """One weight per sample, for every output; or, for a model with several outputs, one
    entry per output: an object keyed by output name, or a list with one array per output (as
    Keras reads a list there)."""
    if sw is None:
        return [None] * len(names)
    per_output = isinstance(sw, dict) or (
        len(names) > 1
        and isinstance(sw, list | tuple)
        and len(sw) == len(names)
        and all(v is None or isinstance(v, list | tuple | np.ndarray) for v in sw)
    )
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


class BatchSource(Protocol):
    """What the fit loop, its validation and evaluate take batches from: `Arrays` on the
    device, or `HostBatches` gathered from memory-mapped files."""

    @property
    def size(self) -> int: ...

    def take(self, index: torch.Tensor | slice) -> Arrays: ...

    def prefetch(self, index: torch.Tensor | slice | None) -> None: ...

    def close(self) -> None: ...


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
    def from_numpy(
        cls, data: XY, device: torch.device, input_dtypes: Sequence[torch.dtype] | None = None
    ) -> Arrays:
        """On the device: inputs in `input_dtypes` (float32 where None), labels and weights
        in float32."""

        def put(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else cast_input(torch.as_tensor(a).to(device), torch.float32)

        dtypes = input_dtypes or [torch.float32] * len(data.x)
        xs = input_tensors(data.x, dtypes, device)
        return cls(xs, [put(a) for a in data.y], [put(a) for a in data.sample_weight])

    def prefetch(self, index: torch.Tensor | slice | None) -> None:
        """Nothing to read ahead: every batch is on the device already (see HostBatches)."""

    def close(self) -> None:
        pass

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
        raise DataError(
            loc,
            f"the output carries a mask of shape {want}: give one weight per "
            f"masked entry, shape {want}, got {list(sw.shape)}",
        )
    if sw.ndim > 1 and sw.ndim >= len(out):
        shown = ["N", *out[1:]]
        raise DataError(
            loc,
            f"per-step weights need fewer axes than the output {shown} (a "
            f"loss reduces its last axis), got {list(sw.shape)}",
        )
    if sw.ndim > 1 and tuple(sw.shape[1:]) != tuple(out[1 : sw.ndim]):
        raise DataError(
            loc,
            f"per-step weights must match the output's leading axes "
            f"{['N', *out[1 : sw.ndim]]}, got {list(sw.shape)}",
        )
