"""CSV files: a header row of column names, then one numeric row per sample.

The header is read and checked first (at most `csv_max_line_bytes` read, at most
`csv_max_columns` names, each non-empty and unique). The data rows are then cut into segments of
whole lines (csvsegments, which also checks line lengths) and each segment is parsed by pyarrow's
CSV parser (C++, typed columns, threaded). Parsing one bounded segment at a time, rather than
with pyarrow's streaming reader, whose read-ahead holds many blocks at once, keeps memory low.
The label column, if named, becomes `y`: int64 when every value is written as an integer, else
float32. The other columns, in file order, become the feature array (float32, shape (N, C),
`columns` naming them).

Every value must be a finite number: ints, decimals and scientific notation are accepted; an
empty field is a missing value; "nan", "inf", "Infinity" and similar spellings parse as numbers
but are refused, as arrays must be finite; so are values beyond float32's range. Rows are counted
1-based among data rows (the header is not counted; neither are blank lines, which are skipped).
A row with the wrong number of fields is reported by its line number in the file.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from app.datasets.conversion import ArrayInfo, FormatError, clip
from app.datasets.csvlabel import LABEL_ARRAY, LabelColumn, first_bad_number
from app.datasets.csvsegments import Segment, segments
from app.datasets.npywriter import Outputs

# pyarrow parses a segment in blocks, in parallel; a block must hold at least one whole line.
PARSE_BLOCK_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
_CONVERSION_ERROR = re.compile(r"In CSV column #(\d+): CSV conversion error to \w+: invalid value")


def _read_header(raw: Path, limit: int, max_columns: int) -> tuple[list[str], int]:
    """The column names and the byte offset where the data starts."""
    with open(raw, "rb") as file:
        head = file.read(limit + 2)
    end = head.find(b"\n")
    if end < 0 or end > limit:
        if end > limit or len(head) > limit:
            start = head[:limit].removeprefix(_BOM).decode("utf-8", "replace")
            columns = len(next(csv.reader(io.StringIO(start)), []))
            if columns > max_columns:
                raise FormatError(
                    f"the CSV file has more than {max_columns} columns (the first {limit} bytes "
                    f"of the header name {columns})",
                    loc=("body", "line", 1),
                )
            raise FormatError(
                f"the header line is longer than {limit} bytes", loc=("body", "line", 1)
            )
        if not head.strip():
            raise FormatError("the CSV file is empty; a header row is expected")
        raise FormatError("the CSV file has a header row but no data rows")
    line = head[:end].removeprefix(_BOM).rstrip(b"\r")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("the header row is not UTF-8 text", loc=("body", "line", 1)) from None
    names = next(csv.reader(io.StringIO(text)), [])
    if len(names) > max_columns:
        raise FormatError(
            f"the CSV file has {len(names)} columns; at most {max_columns} are allowed",
            loc=("body", "line", 1),
        )
    seen: set[str] = set()
    for position, name in enumerate(names, 1):
        if not name.strip():
            raise FormatError(
                f"column {position} of the header row has no name", loc=("body", "line", 1)
            )
        if name in seen:
            raise FormatError(
                f"the header names column {clip(repr(name))} twice", loc=("body", name)
            )
        seen.add(name)
    return names, end + 1


class _Parser:
    """pyarrow's CSV parser (C++, typed columns, threaded) applied to one segment at a time."""

    def __init__(self, names: list[str], types: dict[str, pa.DataType]) -> None:
        self.names, self.types = names, types
        self.invalid_row: Any = None

    def _on_invalid_row(self, row: Any) -> str:
        if self.invalid_row is None:
            self.invalid_row = row
        return "error"

    def parse(self, segment: Segment, types: dict[str, pa.DataType], include: list[str]) -> Any:
        return pacsv.read_csv(
            pa.py_buffer(segment.data),
            read_options=pacsv.ReadOptions(
                column_names=self.names, block_size=max(PARSE_BLOCK_BYTES, segment.longest + 64)
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=self._on_invalid_row),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                include_columns=include,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )

    def table(self, segment: Segment, rows: int) -> Any:
        """The segment's rows (None for a segment of blank lines), or a 422 that says where."""
        try:
            return self.parse(segment, self.types, self.names)
        except pa.ArrowException as exc:
            message = str(exc)
            if message.startswith("Empty CSV file"):
                return None
            raise self._refusal(message, segment, rows) from None

    def _refusal(self, message: str, segment: Segment, rows: int) -> FormatError:
        if self.invalid_row is not None:
            return self._wrong_field_count(segment)
        match = _CONVERSION_ERROR.match(message)
        if match is not None and int(match.group(1)) < len(self.names):
            refusal = self._text_value(self.names[int(match.group(1))], segment, rows)
            if refusal is not None:
                return refusal
        return FormatError(f"not a valid CSV file: {clip(message, 300)}")

    def _wrong_field_count(self, segment: Segment) -> FormatError:
        row = self.invalid_row
        target = row.text.encode("utf-8")
        lines = bytes(segment.data).split(b"\n")
        found = [i for i, text in enumerate(lines) if text.rstrip(b"\r") == target][:1]
        line = segment.line + found[0] if found else None
        return FormatError(
            f"{f'line {line}' if line else 'a line'} has {row.actual_columns} fields where "
            f"the header has {row.expected_columns}: {clip(repr(row.text))}",
            loc=("body", "line", line) if line else ("body",),
        )

    def _text_value(self, column: str, segment: Segment, rows: int) -> FormatError | None:
        """Where pyarrow found a value that is not a number: the segment parsed again as text."""
        try:
            text = self.parse(segment, {column: pa.string()}, [column]).column(0)
            found = first_bad_number(text.combine_chunks())
        except pa.ArrowException:
            return None
        if found is None:
            return None
        row, value = rows + found[0] + 1, found[1]
        return FormatError(
            f"column {clip(repr(column))} holds {clip(repr(value))} at row {row}; every value "
            "must be a number (is it a text column?)",
            loc=("body", "row", row, column),
        )


def _check_features(table: Any, features: list[str], rows: int) -> np.ndarray:
    """The table's feature columns as float32 (n, C); a 422 for a missing or non-finite value."""
    values = np.empty((table.num_rows, len(features)), dtype=np.float32)
    for j, name in enumerate(features):
        column = table.column(name)
        if column.null_count:
            first = int(pc.index(pc.is_null(column), True).as_py())
            raise FormatError(
                f"row {rows + first + 1} has no value (an empty field) in column "
                f"{clip(repr(name))}",
                loc=("body", "row", rows + first + 1, name),
            )
        source = column.to_numpy()
        with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
            values[:, j] = source
        finite = np.isfinite(values[:, j])
        if not finite.all():
            first = int(np.argmin(finite))
            value = float(source[first])
            reason = (
                "values must be finite (NaN and infinity are refused)"
                if not np.isfinite(value)
                else "it is beyond float32's range"
            )
            raise FormatError(
                f"column {clip(repr(name))} holds {value!r} at row {rows + first + 1}; {reason}",
                loc=("body", "row", rows + first + 1, name),
            )
    return values


def convert_csv(raw: Path, outputs: Outputs, *, array: str, label: str | None) -> list[ArrayInfo]:
    limits = outputs.limits
    names, start = _read_header(raw, limits.csv_max_line_bytes, limits.csv_max_columns)
    if label is not None and label not in names:
        raise FormatError(
            f"label column {clip(repr(label))} is not in the header; the columns are "
            + clip(", ".join(map(repr, names)), 200),
            loc=("query", "label"),
        )
    features = [name for name in names if name != label]
    if not features:
        raise FormatError(
            "the CSV file has no feature column besides the label", loc=("query", "label")
        )
    if label is not None and array == LABEL_ARRAY:
        raise FormatError(
            f"the label becomes array {LABEL_ARRAY!r}, so the features need another name",
            loc=("query", "array"),
        )
    types: dict[str, pa.DataType] = {name: pa.float64() for name in features}
    if label is not None:
        types[label] = pa.string()
    parser = _Parser(names, types)
    x = outputs.writer(array, np.dtype(np.float32), (len(features),))
    y = LabelColumn(outputs, label) if label is not None else None
    rows = 0
    try:
        for segment in segments(raw, start, limits.csv_max_line_bytes):
            table = parser.table(segment, rows)
            if table is None:
                continue
            x.write(_check_features(table, features, rows))
            if y is not None and label is not None:
                y.add(table.column(label).combine_chunks(), rows)
            rows += table.num_rows
            del table
    finally:
        if y is not None:
            y.close()
    if rows == 0:
        raise FormatError("the CSV file has a header row but no data rows")
    infos = [x.finish(rows, columns=features)]
    if y is not None:
        infos.append(y.finish(rows))
    return infos
