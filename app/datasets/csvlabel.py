"""The CSV label column, which becomes `y`, and locating the first non-number in a column.

The label's dtype is only known at the end of the file: int64 while every value is written as an
integer, float32 from the first value that is not. Values are kept in a raw scratch file (int64,
converted to float32 once if a non-integer appears) and copied into `y.npy` at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.datasets.conversion import CHUNK_BYTES, ArrayInfo, FormatError, clip
from app.datasets.npywriter import Outputs

LABEL_ARRAY = "y"


def _fails(text: Any, target: pa.DataType) -> bool:
    try:
        pc.cast(text, target)
    except pa.ArrowInvalid:
        return True
    return False


def first_bad_number(column: Any) -> tuple[int, str] | None:
    """The index and text of the first value of a string column that is not a number."""
    text = pc.utf8_trim_whitespace(column)
    if not _fails(text, pa.float64()):
        return None
    good, bad = 0, len(text)  # text[:good] converts; text[:bad] does not
    while bad - good > 1:
        middle = (good + bad) // 2
        if _fails(text.slice(0, middle), pa.float64()):
            bad = middle
        else:
            good = middle
    return bad - 1, str(column[bad - 1].as_py())


def _copy(source: Path, target: BinaryIO, dtype: np.dtype, into: np.dtype) -> None:
    step = CHUNK_BYTES // dtype.itemsize
    with open(source, "rb") as file:
        while data := file.read(step * dtype.itemsize):
            target.write(np.frombuffer(data, dtype=dtype).astype(into).tobytes())


class LabelColumn:
    """The values of the label column, batch by batch, then `y.npy`."""

    def __init__(self, outputs: Outputs, column: str) -> None:
        self.outputs = outputs
        self.column = column
        self.dtype: np.dtype = np.dtype(np.int64)
        self.path = outputs.scratch(LABEL_ARRAY)
        self._file: BinaryIO = open(self.path, "xb")  # noqa: SIM115 - closed by finish

    def add(self, values: Any, rows: int) -> None:
        """Append one batch's values (a pyarrow string array); `rows` came before it."""
        if values.null_count:
            first = int(pc.index(pc.is_null(values), True).as_py())
            raise FormatError(
                f"row {rows + first + 1} has no value (an empty field) in the label column "
                f"{clip(repr(self.column))}",
                loc=("body", "row", rows + first + 1, self.column),
            )
        text = pc.utf8_trim_whitespace(values)
        if self.dtype == np.int64:
            try:
                integers = pc.cast(text, pa.int64()).to_numpy()
            except pa.ArrowInvalid:
                self._become_float()
            else:
                self._file.write(integers.astype("<i8").tobytes())
                return
        found = first_bad_number(values)
        if found is not None:
            row, value = rows + found[0] + 1, found[1]
            raise FormatError(
                f"label column {clip(repr(self.column))} holds {clip(repr(value))} at row {row}; "
                "every value must be a number",
                loc=("body", "row", row, self.column),
            )
        wide = pc.cast(text, pa.float64()).to_numpy()
        with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
            narrow = wide.astype(np.float32)
        finite = np.isfinite(narrow)
        if not finite.all():
            first = int(np.argmin(finite))
            raise FormatError(
                f"label column {clip(repr(self.column))} holds {float(wide[first])!r} at row "
                f"{rows + first + 1}; values must be finite and within float32's range",
                loc=("body", "row", rows + first + 1, self.column),
            )
        self._file.write(narrow.astype("<f4").tobytes())

    def _become_float(self) -> None:
        self._file.close()
        floats = self.outputs.scratch(f"{LABEL_ARRAY}_float")
        with open(floats, "xb") as target:
            _copy(self.path, target, np.dtype("<i8"), np.dtype("<f4"))
        floats.replace(self.path)
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed by finish
        self.dtype = np.dtype(np.float32)

    def close(self) -> None:
        self._file.close()

    def finish(self, rows: int) -> ArrayInfo:
        self._file.close()
        writer = self.outputs.writer(LABEL_ARRAY, self.dtype, ())
        step = CHUNK_BYTES // self.dtype.itemsize
        with open(self.path, "rb") as file:
            while data := file.read(step * self.dtype.itemsize):
                writer.write(np.frombuffer(data, dtype=self.dtype.newbyteorder("<")))
        self.path.unlink()
        return writer.finish(rows)
