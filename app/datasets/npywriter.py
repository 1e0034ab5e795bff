"""Writing converted arrays: streamed .npy files, their statistics, and the output directory.

`NpyWriter` takes an array chunk by chunk, in C order, without knowing its row count in advance:
it reserves a version 1.0 header wide enough for any row count and rewrites it with the final
shape at the end (padded with spaces, as numpy pads its own headers, to a multiple of 64 bytes).
While writing it checks that float values are finite and bools are 0 or 1, and keeps the minimum
and maximum. `Outputs` owns the files one conversion writes: it enforces the array count and the
total byte limit, fsyncs what it keeps, and removes everything when the conversion fails.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from app.datasets.conversion import (
    ArrayInfo,
    ConvertLimits,
    FormatError,
    array_nbytes,
    check_name,
)

_MAGIC = b"\x93NUMPY\x01\x00"
_MAX_ROWS_DIGITS = 10**19 - 1


def npy_header(dtype: np.dtype, shape: tuple[int, ...], length: int | None = None) -> bytes:
    """A version 1.0 header for a C-order array, `length` bytes long (default: the smallest
    multiple of 64 that holds it)."""
    descr = np.lib.format.dtype_to_descr(dtype)
    body = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}".encode("latin1")
    needed = len(_MAGIC) + 2 + len(body) + 1
    if length is None:
        length = -(-needed // 64) * 64
    if needed > length:
        raise ValueError(f"an npy header for shape {shape} needs {needed} bytes, not {length}")
    text = body + b" " * (length - needed) + b"\n"
    return _MAGIC + struct.pack("<H", len(text)) + text


class ArrayStats:
    """Minimum, maximum and the finiteness check of one array, fed chunk by chunk."""

    def __init__(self, name: str, dtype: np.dtype, tail: tuple[int, ...]) -> None:
        self.name = name
        self.kind = dtype.kind
        self.tail = tail
        self.min: float | None = None
        self.max: float | None = None

    def _index(self, flat: int) -> list[int]:
        row_size = math.prod(self.tail)
        return [flat // row_size, *(int(i) for i in np.unravel_index(flat % row_size, self.tail))]

    def update(self, values: np.ndarray, start: int) -> None:
        """`values`: the flattened elements from flat index `start` on."""
        if values.size == 0:
            return
        if self.kind == "f":
            finite = np.isfinite(values)
            if not finite.all():
                first = int(np.argmin(finite))
                index = self._index(start + first)
                raise FormatError(
                    f"array {self.name!r} holds {values[first]} at index {index}; "
                    "values must be finite (no NaN or infinity)",
                    loc=("body", self.name, *index),
                )
            del finite
        elif self.kind == "b":
            raw = values.view(np.uint8)
            if int(raw.max()) > 1:
                first = int(np.argmax(raw > 1))
                index = self._index(start + first)
                raise FormatError(
                    f"array {self.name!r} is bool but holds the byte {int(raw[first])} at index "
                    f"{index}; bool arrays hold only 0 and 1",
                    loc=("body", self.name, *index),
                )
        low, high = float(values.min()), float(values.max())
        self.min = low if self.min is None else min(self.min, low)
        self.max = high if self.max is None else max(self.max, high)


class NpyWriter:
    """One output array, written chunk by chunk; `finish` completes its header."""

    def __init__(
        self, outputs: Outputs, path: Path, name: str, dtype: np.dtype, tail: tuple[int, ...]
    ):
        self.outputs = outputs
        self.path = path
        self.name = name
        self.dtype = dtype
        self.tail = tail
        self.stats = ArrayStats(name, dtype, tail)
        self.elements = 0
        self._header_length = len(npy_header(dtype, (_MAX_ROWS_DIGITS, *tail)))
        self._file: BinaryIO | None = open(path, "xb")  # noqa: SIM115 - closed by finish/close
        self._file.write(b"\0" * self._header_length)

    def write(self, chunk: np.ndarray) -> None:
        """Append elements in C order (any shape; they are flattened), converted to the dtype."""
        assert self._file is not None, "write after finish"
        values = np.ascontiguousarray(chunk, dtype=self.dtype).reshape(-1)
        self.stats.update(values, self.elements)
        self.outputs.charge(values.nbytes)
        self._file.write(values.data)
        self.elements += values.size

    def finish(self, rows: int, columns: list[str] | None = None) -> ArrayInfo:
        assert self._file is not None, "finish called twice"
        shape = (rows, *self.tail)
        if self.elements != math.prod(shape):
            raise FormatError(
                f"array {self.name!r} should have shape {shape} but {self.elements} elements "
                "were read",
                loc=("body", self.name),
            )
        if rows < 1:
            raise FormatError(
                f"array {self.name!r} must have at least one row; it has none",
                loc=("body", self.name),
            )
        self._file.seek(0)
        self._file.write(npy_header(self.dtype, shape, self._header_length))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.close()
        return ArrayInfo(
            name=self.name,
            dtype=self.dtype.name,
            shape=shape,
            nbytes=array_nbytes(shape, self.dtype),
            min=self.stats.min,
            max=self.stats.max,
            columns=columns,
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def check_total_bytes(total: int, limits: ConvertLimits) -> None:
    """A 413 when arrays of `total` bytes in all would exceed the limit."""
    if total > limits.max_bytes:
        raise FormatError(
            f"the arrays would hold {total} bytes; at most {limits.max_bytes} are allowed",
            status=413,
        )


class Outputs:
    """The files one conversion writes into `out_dir`, and the limits they share."""

    def __init__(self, out_dir: Path, limits: ConvertLimits) -> None:
        self.out_dir = out_dir
        self.limits = limits
        self.total = 0
        self.names: set[str] = set()
        self._paths: list[Path] = []
        self._writers: list[NpyWriter] = []

    def expect(self, nbytes: int) -> None:
        """A 413 now if arrays of `nbytes` in all would exceed the limit."""
        check_total_bytes(self.total + nbytes, self.limits)

    def charge(self, nbytes: int) -> None:
        self.expect(nbytes)
        self.total += nbytes

    def claim(self, name: str) -> Path:
        """Reserve the array name `name`: valid, unused, and within the array count."""
        check_name(name)
        if name in self.names:
            raise FormatError(f"two arrays are named {name!r}", loc=("body", name))
        if len(self.names) >= self.limits.max_arrays:
            raise FormatError(
                f"a dataset holds at most {self.limits.max_arrays} arrays", loc=("body", name)
            )
        self.names.add(name)
        return self.out_dir / f"{name}.npy"

    def scratch(self, name: str) -> Path:
        """A temporary file in out_dir, removed with the outputs if the conversion fails."""
        path = self.out_dir / f".{name}.part"
        self._paths.append(path)
        return path

    def writer(self, name: str, dtype: np.dtype, tail: tuple[int, ...]) -> NpyWriter:
        path = self.claim(name)
        self._paths.append(path)
        writer = NpyWriter(self, path, name, dtype, tail)
        self._writers.append(writer)
        return writer

    def adopt(self, source: Path, name: str, nbytes: int) -> None:
        """Move an already valid .npy file in as array `name` (its stats were computed)."""
        path = self.claim(name)
        self.charge(nbytes)
        self._paths.append(path)
        os.replace(source, path)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def commit(self) -> None:
        """Make the kept files durable: fsync the directory that names them."""
        fd = os.open(self.out_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def discard(self) -> None:
        """Remove everything this conversion wrote."""
        for writer in self._writers:
            writer.close()
        for path in self._paths:
            path.unlink(missing_ok=True)
