"""The .npy format: reading a header safely, and converting one .npy file.

Headers are parsed by numpy's own `read_magic` and `read_array_header_1_0/2_0` (a literal parser:
never pickle), with the header length capped. The file's size must be exactly the header plus
rows x row size, decided before anything is allocated. Data is read with plain reads into a
bounded buffer (a memory map would count every page read in the process's resident size).
A little-endian C-order file is only scanned (finiteness, min and max) and then moved into place;
big-endian data is byte-swapped chunk by chunk, and Fortran-order data is gathered row block by
row block with positioned reads.
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from app.datasets.conversion import (
    CHUNK_BYTES,
    ArrayInfo,
    ConvertLimits,
    FormatError,
    array_nbytes,
    check_dtype,
    check_shape,
    clip,
)
from app.datasets.npywriter import ArrayStats, NpyWriter, Outputs, check_total_bytes

MAX_HEADER_BYTES = 10_000
# A Fortran-order row is gathered from this many separate places in the file; beyond this, the
# number of reads per row block would make conversion crawl.
FORTRAN_MAX_ROW_ELEMENTS = 65_536


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def tell(self) -> int: ...


@dataclass(frozen=True)
class NpyHeader:
    name: str
    dtype: np.dtype  # as stored (its byte order may be big-endian)
    shape: tuple[int, ...]
    fortran_order: bool
    data_offset: int

    @property
    def nbytes(self) -> int:
        return array_nbytes(self.shape, self.dtype)

    @property
    def tail(self) -> tuple[int, ...]:
        return self.shape[1:]


def read_header(stream: Readable, name: str, limits: ConvertLimits) -> NpyHeader:
    """Parse and check an npy header; `stream` is left at the start of the data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(
                stream, max_header_size=MAX_HEADER_BYTES
            )
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(
                stream, max_header_size=MAX_HEADER_BYTES
            )
        else:
            raise FormatError(
                f"array {name!r}: npy format version {version[0]}.{version[1]} is not accepted "
                "(1.0 and 2.0 are)",
                loc=("body", name),
            )
    except FormatError:
        raise
    except Exception as exc:  # numpy reports a bad header in several exception types
        raise FormatError(
            f"array {name!r} is not a valid .npy file: {clip(str(exc), 200)}", loc=("body", name)
        ) from None
    check_dtype(name, dtype)
    shape = check_shape(name, shape, limits)
    return NpyHeader(name, dtype, shape, bool(fortran) and len(shape) > 1, stream.tell())


def check_data_size(header: NpyHeader, data_bytes: int, what: str) -> None:
    """The data after the header must be exactly what the header's dtype and shape imply."""
    if data_bytes != header.nbytes:
        found = "fewer" if data_bytes < header.nbytes else "more"
        raise FormatError(
            f"array {header.name!r}: the header declares shape {header.shape} of "
            f"{header.dtype.name}, which is {header.nbytes} bytes, but {what} holds "
            f"{data_bytes} bytes of data ({found}: truncated or trailing bytes)",
            loc=("body", header.name),
        )


def rows_per_chunk(row_bytes: int) -> int:
    return max(1, CHUNK_BYTES // max(1, row_bytes))


def read_c_order(
    stream: Readable, header: NpyHeader, writer: NpyWriter | None, stats: ArrayStats
) -> None:
    """Stream C-order data from `stream` to `writer` (or through `stats` only), chunk by chunk."""
    item = header.dtype.itemsize
    remaining = header.nbytes
    step = max(item, CHUNK_BYTES // item * item)
    done = 0
    while remaining > 0:
        size = min(step, remaining)
        data = stream.read(size)
        if len(data) != size:
            raise FormatError(
                f"array {header.name!r} ends after {header.nbytes - remaining + len(data)} of its "
                f"{header.nbytes} data bytes",
                loc=("body", header.name),
            )
        values = np.frombuffer(data, dtype=header.dtype)
        if writer is not None:
            writer.write(values)
        else:
            stats.update(values, done)
        done += values.size
        remaining -= size
        del data, values


def read_fortran_order(fd: int, offset: int, header: NpyHeader, writer: NpyWriter) -> None:
    """Write Fortran-order data (starting at `offset` in `fd`) in C order.

    On disk, row i's element at trailing position k (counted in Fortran order) is at
    `offset + (k * rows + i) * itemsize`: each block of rows is gathered from one run per k.
    """
    rows, tail, dtype = header.shape[0], header.tail, header.dtype
    width = math.prod(tail)
    if width > FORTRAN_MAX_ROW_ELEMENTS:
        raise FormatError(
            f"array {header.name!r} is in Fortran order with {width} elements per row; Fortran "
            f"order is accepted up to {FORTRAN_MAX_ROW_ELEMENTS} per row (save the array in C "
            "order, e.g. with np.ascontiguousarray)",
            loc=("body", header.name),
        )
    item = dtype.itemsize
    step = rows_per_chunk(width * item)
    buffer = np.empty(width * min(step, rows), dtype=dtype)
    for start in range(0, rows, step):
        count = min(step, rows - start)
        block = buffer[: width * count].reshape(width, count)
        for k in range(width):
            position = offset + (k * rows + start) * item
            if os.preadv(fd, [memoryview(block[k]).cast("B")], position) != count * item:
                raise FormatError(
                    f"array {header.name!r} ends before its declared size",
                    loc=("body", header.name),
                )
        # block[k, r] is element (start + r, *unravel_F(k)); as C order: (r, *tail).
        c_block = block.reshape(*reversed(tail), count).transpose()
        writer.write(c_block)


# The version 1.0 header numpy writes (`np.save`): the dictionary's keys in this order, one of
# the accepted types' strings, the shape as a tuple of decimal integers, then spaces and a
# newline. Anything else goes to numpy's parser.
_DIM = rb"(?:0|[1-9][0-9]{0,17})"
_CANONICAL = re.compile(
    rb"\{'descr': '([<>|](?:b1|[iu][1248]|f[248]))', 'fortran_order': (False|True), "
    rb"'shape': \((|" + _DIM + rb",|" + _DIM + rb"(?:, " + _DIM + rb")+)\), \} *\n"
)


def _canonical_header(data: bytes, name: str, limits: ConvertLimits) -> NpyHeader | None:
    """The header of `data` when numpy wrote it as np.save does (what read_header reads from
    it, with the same checks in the same order, without numpy's literal parser); None for any
    other header, which read_header then parses."""
    if data[:8] != b"\x93NUMPY\x01\x00" or len(data) < 10:
        return None
    end = 10 + int.from_bytes(data[8:10], "little")
    found = _CANONICAL.fullmatch(data, 10, end) if end <= 10 + MAX_HEADER_BYTES else None
    if found is None:
        return None
    descr, fortran, dims = found.groups()
    try:
        dtype = np.dtype(descr.decode("ascii"))
    except TypeError:
        return None
    check_dtype(name, dtype)
    shape = check_shape(name, tuple(int(n) for n in dims.split(b",") if n.strip()), limits)
    return NpyHeader(name, dtype, shape, fortran == b"True" and len(shape) > 1, end)


def npy_in_memory(data: bytes, name: str, limits: ConvertLimits) -> np.ndarray | None:
    """The .npy file `data` as a read-only array over those bytes, after the checks
    convert_npy makes (header, data size, the byte limit, dtype, finiteness), when it is
    already little-endian and C order; None when it is not (convert_npy rewrites such a file).
    For a small body (a predict request's), this spares the scratch files and their fsyncs."""
    header = _canonical_header(data, name, limits) or read_header(io.BytesIO(data), name, limits)
    check_data_size(header, len(data) - header.data_offset, "the file")
    check_total_bytes(header.nbytes, limits)  # Outputs.expect's refusal, nothing else held
    native = check_dtype(name, header.dtype)
    if header.dtype != native or header.fortran_order:
        return None
    count = math.prod(header.shape)
    array = np.frombuffer(data, native, count, header.data_offset).reshape(header.shape)
    ArrayStats(name, native, header.tail).update(array.reshape(-1), 0)
    return array


def convert_npy(raw: Path, name: str, outputs: Outputs) -> ArrayInfo:
    """Convert one .npy file to array `name`; may move `raw` into the output directory."""
    size = raw.stat().st_size
    with open(raw, "rb") as file:
        header = read_header(file, name, outputs.limits)
        check_data_size(header, size - header.data_offset, "the file")
        outputs.expect(header.nbytes)
        native = check_dtype(name, header.dtype)
        same_device = raw.stat().st_dev == outputs.out_dir.stat().st_dev
        if header.dtype == native and not header.fortran_order and same_device:
            stats = ArrayStats(name, native, header.tail)
            read_c_order(file, header, None, stats)
            file.close()
            outputs.adopt(raw, name, header.nbytes)
            return ArrayInfo(
                name=name,
                dtype=native.name,
                shape=header.shape,
                nbytes=header.nbytes,
                min=stats.min,
                max=stats.max,
            )
        writer = outputs.writer(name, native, header.tail)
        if header.fortran_order:
            read_fortran_order(file.fileno(), header.data_offset, header, writer)
        else:
            read_c_order(file, header, writer, writer.stats)
        return writer.finish(header.shape[0])
