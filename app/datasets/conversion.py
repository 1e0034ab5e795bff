"""The contract every dataset conversion keeps: its limits, its error, and the array rules.

An uploaded file becomes arrays that the training engine reads back with
`np.load(path, mmap_mode="r")`. Whatever the source format, each array has a valid name (it
appears in URLs and JSON), one of the accepted dtypes, 1 to `max_ndim` axes with at least one row,
and only finite values. Every refusal is a `FormatError` whose message says what was expected and
what was found, with the status the API answers with (413 for sizes over the limits, else 422).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Bytes read, converted and written per step; bounds the memory a conversion adds.
CHUNK_BYTES = 16 << 20

ARRAY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
ACCEPTED_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)

Loc = Sequence[str | int]


class FormatError(Exception):
    """An uploaded file that cannot become arrays: 422, or 413 when it is over a size limit."""

    def __init__(self, message: str, *, loc: Loc = ("body",), status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.loc: list[str | int] = list(loc)
        self.status = status


@dataclass(frozen=True)
class ConvertLimits:
    """What one upload may hold; `max_bytes` is the total size of all its output arrays."""

    max_bytes: int
    max_arrays: int = 64
    max_ndim: int = 8
    csv_max_columns: int = 65_536
    csv_max_line_bytes: int = 4 << 20
    json_max_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_arrays", "max_ndim", "csv_max_columns"):
            if getattr(self, name) < 1:
                raise ValueError(f"ConvertLimits.{name} must be at least 1")
        if self.csv_max_line_bytes < 16 or self.json_max_bytes < 16:
            raise ValueError("ConvertLimits byte limits must be at least 16")


@dataclass(frozen=True)
class ArrayInfo:
    """One converted array, as stored in `<name>.npy`.

    `min` and `max` are over all elements (None for an empty array), so labels and Embedding ids
    can be checked later without reading the data again; `columns` names the source columns of
    an array stacked from CSV or Parquet scalar columns.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    min: float | None
    max: float | None
    columns: list[str] | None = None


def clip(text: str, limit: int = 60) -> str:
    """`text` shortened for an error message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_name(name: str, *, loc: Loc = ("body",)) -> str:
    if not isinstance(name, str) or ARRAY_NAME.fullmatch(name) is None:
        raise FormatError(
            f"array names match [A-Za-z_][A-Za-z0-9_]{{0,63}}; got {clip(repr(name))}", loc=loc
        )
    return name


def check_dtype(name: str, dtype: np.dtype) -> np.dtype:
    """The little-endian form of `dtype` if it is accepted, else a 422 naming array and dtype."""
    if dtype.fields is None and dtype.subdtype is None and dtype.name in ACCEPTED_DTYPES:
        return dtype.newbyteorder("<")
    raise FormatError(
        f"array {name!r} has dtype {dtype.str!r} ({dtype}); accepted dtypes are "
        + ", ".join(ACCEPTED_DTYPES),
        loc=("body", name),
    )


def check_shape(name: str, shape: Sequence[int], limits: ConvertLimits) -> tuple[int, ...]:
    """`shape` if it has 1 to max_ndim axes and at least one row, else a 422."""
    if not all(type(n) is int and n >= 0 for n in shape):
        raise FormatError(f"array {name!r} has an invalid shape {shape!r}", loc=("body", name))
    if not 1 <= len(shape) <= limits.max_ndim:
        raise FormatError(
            f"array {name!r} must have 1 to {limits.max_ndim} axes; it has shape {tuple(shape)}",
            loc=("body", name),
        )
    if shape[0] < 1:
        raise FormatError(
            f"array {name!r} must have at least one row; it has shape {tuple(shape)}",
            loc=("body", name),
        )
    return tuple(shape)


def array_nbytes(shape: Sequence[int], dtype: np.dtype) -> int:
    """Exact size in bytes, in Python integers: a header may claim 10**12 elements."""
    return math.prod(shape) * dtype.itemsize
