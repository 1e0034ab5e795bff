"""Parquet files, read batch by batch with pyarrow.

Accepted column types: integers, floats, bool, and fixed-size lists of them (nested to any depth
within `max_ndim`), which become multi-dimensional arrays: fixed_size_list<fixed_size_list<uint8,
28>, 28> becomes an (N, 28, 28) uint8 array. Everything else (strings, binary, variable-size
lists, structs, maps, dictionaries, dates, timestamps, decimals) is refused naming the column and
its type, and so is a null anywhere, naming the column and the first row (1-based) that holds one.

Outputs: the label column, if named, becomes `y` in its own dtype and shape; each fixed-size-list
column becomes an array named by its column; the other scalar columns, in schema order, are
stacked into the feature array (float32, shape (N, C), `columns` naming them). The footer is
checked before any data is read: row counts that add up, column chunks inside the file, and
output sizes within the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.datasets.conversion import (
    ArrayInfo,
    ConvertLimits,
    FormatError,
    array_nbytes,
    clip,
)
from app.datasets.npywriter import NpyWriter, Outputs

LABEL_ARRAY = "y"
_MAX_BATCH_ROWS = 1 << 16
# Values per batch. pyarrow decodes a batch of nested columns with repetition and definition
# levels and growing buffers, about ten bytes per value, so batches are sized by values.
_BATCH_VALUES = 1 << 20


@dataclass(frozen=True)
class _Column:
    name: str
    dtype: np.dtype
    dims: tuple[int, ...]  # fixed-size list sizes, outermost first; () for a scalar column


def _layout(name: str, kind: pa.DataType, limits: ConvertLimits) -> _Column:
    dims: list[int] = []
    leaf = kind
    while pa.types.is_fixed_size_list(leaf):
        dims.append(leaf.list_size)
        leaf = leaf.value_type
    if pa.types.is_boolean(leaf):
        dtype = np.dtype(np.bool_)
    elif pa.types.is_integer(leaf) or pa.types.is_floating(leaf):
        dtype = np.dtype(leaf.to_pandas_dtype())
    else:
        raise FormatError(
            f"column {clip(repr(name))} has type {clip(str(kind), 120)}; accepted types are "
            "integers, floats, bool and fixed-size lists of them",
            loc=("body", name),
        )
    if len(dims) + 1 > limits.max_ndim:
        raise FormatError(
            f"column {clip(repr(name))} would make an array of {len(dims) + 1} axes; at most "
            f"{limits.max_ndim} are allowed",
            loc=("body", name),
        )
    return _Column(name, dtype, tuple(dims))


def _open(raw: Path) -> Any:
    try:
        return pq.ParquetFile(raw, memory_map=False, buffer_size=1 << 20, pre_buffer=False)
    except Exception as exc:  # pyarrow reports a bad footer in several exception types
        raise FormatError(f"not a valid Parquet file: {clip(str(exc).strip(), 200)}") from None


def _check_footer(parquet: Any, size: int) -> int:
    """The row count, once the footer's row groups and column chunks are consistent."""
    meta = parquet.metadata
    rows = meta.num_rows
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    if rows < 1 or sum(group.num_rows for group in groups) != rows:
        raise FormatError(f"the Parquet file declares {rows} rows; at least one row is expected")
    for group in groups:
        for j in range(group.num_columns):
            chunk = group.column(j)
            start = chunk.dictionary_page_offset or chunk.data_page_offset
            if start < 0 or start + chunk.total_compressed_size > size:
                raise FormatError(
                    "not a valid Parquet file: a column chunk lies outside the file (truncated?)"
                )
    return int(rows)


def _first_null(values: Any, per_row: int) -> int | None:
    """The 0-based row of the first null at any nesting level, or None."""
    level = values
    while True:
        if level.null_count:
            return int(pc.index(pc.is_null(level), True).as_py()) // per_row
        if not pa.types.is_fixed_size_list(level.type):
            return None
        per_row *= level.type.list_size
        level = level.flatten()


def _values(column: _Column, values: Any, rows: int) -> np.ndarray:
    row = _first_null(values, 1)
    if row is not None:
        raise FormatError(
            f"column {clip(repr(column.name))} holds a null at row {rows + row + 1}; nulls are "
            "not accepted",
            loc=("body", "row", rows + row + 1, column.name),
        )
    leaf = values
    while pa.types.is_fixed_size_list(leaf.type):
        leaf = leaf.flatten()
    flat = leaf.to_numpy(zero_copy_only=False)
    if column.dtype.kind == "f":
        _check_finite(column, flat, rows, flat.size // max(1, len(values)))
    return flat.reshape(len(values), *column.dims)


def _check_finite(column: _Column, values: np.ndarray, rows: int, per_row: int) -> None:
    finite = np.isfinite(values)
    if not finite.all():
        first = int(np.argmin(finite))
        row = rows + first // max(1, per_row) + 1
        raise FormatError(
            f"column {clip(repr(column.name))} holds {float(values[first])!r} at row {row}; "
            "values must be finite (no NaN or infinity) and, in the feature array, within "
            "float32's range",
            loc=("body", "row", row, column.name),
        )


def convert_parquet(
    raw: Path, outputs: Outputs, *, array: str, label: str | None
) -> list[ArrayInfo]:
    parquet = _open(raw)
    try:
        schema = parquet.schema_arrow
        rows = _check_footer(parquet, raw.stat().st_size)
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(f"not a valid Parquet file: {clip(str(exc).strip(), 200)}") from None
    names = [field.name for field in schema]
    if len(set(names)) != len(names):
        raise FormatError("the Parquet file has two columns of the same name")
    if label is not None and label not in names:
        raise FormatError(
            f"label column {clip(repr(label))} is not in the file; the columns are "
            + clip(", ".join(map(repr, names)), 200),
            loc=("query", "label"),
        )
    columns = [_layout(field.name, field.type, outputs.limits) for field in schema]
    scalars = [c for c in columns if not c.dims and c.name != label]
    arrays = [c for c in columns if c.dims and c.name != label]
    if not scalars and not arrays:
        raise FormatError("the Parquet file has no feature column besides the label")
    row_bytes = len(scalars) * 4 + sum(
        array_nbytes(c.dims, c.dtype) for c in columns if c not in scalars
    )
    outputs.expect(rows * row_bytes)
    writers: dict[str, NpyWriter] = {}
    if scalars:
        writers[array] = outputs.writer(array, np.dtype(np.float32), (len(scalars),))
    for column in columns:
        if column.name == label:
            writers[LABEL_ARRAY] = outputs.writer(LABEL_ARRAY, column.dtype, column.dims)
    for column in arrays:
        writers[column.name] = outputs.writer(column.name, column.dtype, column.dims)
    leaves = sum(math.prod(c.dims) for c in columns)
    step = max(1, min(_MAX_BATCH_ROWS, _BATCH_VALUES // max(1, leaves)))
    done = 0
    try:
        for batch in parquet.iter_batches(batch_size=step, use_threads=False):
            if scalars:
                features = np.empty((batch.num_rows, len(scalars)), dtype=np.float32)
                for j, column in enumerate(scalars):
                    with np.errstate(over="ignore"):  # beyond float32: inf, refused below
                        features[:, j] = _values(column, batch.column(column.name), done)
                    _check_finite(column, features[:, j], done, 1)
                writers[array].write(features)
            for column in columns:
                if column in scalars:
                    continue
                target = LABEL_ARRAY if column.name == label else column.name
                writers[target].write(_values(column, batch.column(column.name), done))
            done += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise FormatError(
            f"the Parquet file's data is corrupt: {clip(str(exc).strip(), 200)}"
        ) from None
    if done != rows:
        raise FormatError(f"the Parquet file declares {rows} rows but holds {done}")
    infos = []
    for name, writer in writers.items():
        stacked = [c.name for c in scalars] if name == array and scalars else None
        infos.append(writer.finish(rows, columns=stacked))
    return infos
