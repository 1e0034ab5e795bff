"""numpy arrays as the bytes the server takes: an `.npy` (header, then the array's own memory,
never copied when it is already C order) or an uncompressed `.npz` with fixed timestamps, so
the same arrays always give the same bytes and the same sha256."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

CHUNK = 1 << 20
KINDS = "biuf"  # bool, signed and unsigned integers, floats: what the server stores
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def as_array(value: Any, what: str = "x") -> np.ndarray:
    """A numeric numpy array in C order (nested lists are converted as numpy does)."""
    array = np.ascontiguousarray(np.asarray(value))
    if array.dtype.kind not in KINDS or array.dtype.itemsize > 8:
        raise TypeError(f"{what}: only numeric arrays are sent, got dtype {array.dtype}")
    if array.ndim == 0:
        raise ValueError(f"{what}: needs at least one axis, got a scalar")
    return array


def npy_header(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(array)
    try:
        np.lib.format.write_array_header_1_0(buf, header)
    except ValueError:  # a header past 64 KiB (very many axes): version 2
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, header)
    return buf.getvalue()


@dataclass
class Payload:
    """Bytes to upload: a size, a sha256, a content type, and `chunks()` that yields them
    afresh on every call (so a retry sends them again from the start)."""

    size: int
    sha256: str
    media: str
    fmt: str
    chunks: Callable[[], Iterator[bytes]]
    cleanup: Callable[[], None] = lambda: None


def npy_payload(array: np.ndarray) -> Payload:
    array = as_array(array)
    head = npy_header(array)
    body = memoryview(array.reshape(-1).view(np.uint8).data) if array.size else memoryview(b"")

    def chunks() -> Iterator[bytes]:
        yield head
        for start in range(0, len(body), CHUNK):
            yield bytes(body[start : start + CHUNK])

    digest = hashlib.sha256()
    for part in chunks():
        digest.update(part)
    size = len(head) + len(body)
    return Payload(size, digest.hexdigest(), "application/x-npy", "npy", chunks)


def write_npz(arrays: Mapping[str, Any], out: IO[bytes]) -> None:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            array = as_array(value, name)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIME)
            with zf.open(info, "w", force_zip64=True) as member:
                member.write(npy_header(array))
                member.write(array.reshape(-1).view(np.uint8).data)


def npz_payload(arrays: Mapping[str, Any]) -> Payload:
    """The arrays as one `.npz`, spooled to a temporary file (in memory while small)."""
    spool = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115 (closed by cleanup)
    write_npz(arrays, spool)
    size = spool.tell()
    spool.seek(0)
    digest = hashlib.sha256()
    while part := spool.read(CHUNK):
        digest.update(part)

    def chunks() -> Iterator[bytes]:
        spool.seek(0)
        while part := spool.read(CHUNK):
            yield part

    return Payload(size, digest.hexdigest(), "application/x-npz", "npz", chunks, spool.close)


MEDIA = {
    "npy": "application/x-npy",
    "npz": "application/x-npz",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "json": "application/json",
}


def file_payload(path: str | os.PathLike[str]) -> Payload:
    """A file as it is; its format from its suffix."""
    file = Path(path)
    fmt = file.suffix.lower().lstrip(".")
    if fmt not in MEDIA:
        raise ValueError(f"{file.name}: the format is unknown; expected one of {sorted(MEDIA)}")
    digest = hashlib.sha256()
    with file.open("rb") as f:
        while part := f.read(CHUNK):
            digest.update(part)

    def chunks() -> Iterator[bytes]:
        with file.open("rb") as f:
            while part := f.read(CHUNK):
                yield part

    return Payload(file.stat().st_size, digest.hexdigest(), MEDIA[fmt], fmt, chunks)


def npy_bytes(array: Any) -> bytes:
    payload = npy_payload(as_array(array))
    return b"".join(payload.chunks())


def npz_bytes(arrays: Mapping[str, Any]) -> bytes:
    buf = io.BytesIO()
    write_npz(arrays, buf)
    return buf.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def load_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}
