"""Uploaded weights as an `.npz` (`arr_0`, `arr_1`, ... as `numpy.savez(f, *get_weights())`
writes), read as hostile input with the dataset reader's zip checks (app.datasets.npz): the
central directory is bounded before zipfile parses it; members must be unencrypted, stored or
deflated; each member's npy header must imply exactly its declared size before anything is
allocated; members are inflated by our own stream, capped at that size and CRC-checked. Unlike a
dataset's arrays, a weight may be a scalar (shape `()`). Nothing is ever unpickled."""

from __future__ import annotations

import tempfile
import zipfile
from typing import IO

import numpy as np

from app.core.errors import InvalidInput
from app.datasets.conversion import FormatError, check_dtype
from app.datasets.npyfile import MAX_HEADER_BYTES, NpyHeader, check_data_size
from app.datasets.npz import MemberStream, check_directory_size, checked_members, data_offset

MAX_ARRAYS = 10_000
READABLE = "not a readable .npz of numeric arrays"


def decode_npz(data: bytes, *, max_bytes: int) -> list[np.ndarray]:
    """The arrays `arr_0..arr_N` of an npz, refusing anything else (pickles, other members,
    broken or falsified zip members, archives that expand past `max_bytes`); a 422 naming the
    member."""
    try:
        with tempfile.TemporaryFile() as file:
            file.write(data)
            file.flush()
            return _decode(file, len(data), max_bytes)
    except FormatError as exc:
        message = exc.message.removeprefix("not a valid .npz file: ")
        raise InvalidInput(f"{READABLE}: {message}", loc=exc.loc) from None


def _decode(file: IO[bytes], size: int, max_bytes: int) -> list[np.ndarray]:
    fd = file.fileno()
    check_directory_size(fd, size, MAX_ARRAYS)
    try:
        with zipfile.ZipFile(file) as archive:
            members = dict(checked_members(archive, size))
    except FormatError:
        raise
    except Exception as exc:  # zipfile reports a bad archive in many exception types
        raise FormatError(f"{exc or type(exc).__name__}") from None
    expected = {f"arr_{k}" for k in range(len(members))}
    if set(members) != expected:
        raise InvalidInput(
            "an .npz of arr_0, arr_1, ... (as numpy.savez(path, *model.get_weights()) "
            f"writes) is expected, got members {sorted(members)[:5]}",
            loc=["body"],
        )
    if sum(info.file_size for info in members.values()) > max_bytes:
        raise InvalidInput(f"expands past {max_bytes} bytes", loc=["body"])
    return [_read_member(fd, size, f"arr_{k}", members[f"arr_{k}"]) for k in range(len(members))]


def _read_member(fd: int, size: int, name: str, info: zipfile.ZipInfo) -> np.ndarray:
    stream = MemberStream(fd, info, data_offset(fd, info, size, name), name)
    header = _read_header(stream, name)
    check_data_size(header, info.file_size - header.data_offset, "the member")
    raw = stream.read(header.nbytes)
    if len(raw) != header.nbytes:
        raise FormatError(f"member {info.filename!r} ends early", loc=("body", name))
    stream.finish()
    dtype = check_dtype(name, header.dtype)
    flat = np.frombuffer(raw, dtype=header.dtype).astype(dtype)
    return flat.reshape(header.shape, order="F" if header.fortran_order else "C")


def _read_header(stream: MemberStream, name: str) -> NpyHeader:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"npy format version {version} is not accepted (1.0 and 2.0 are)")
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(stream, max_header_size=MAX_HEADER_BYTES)
    except FormatError:
        raise
    except Exception as exc:  # numpy reports a bad header in several exception types
        raise FormatError(f"array {name!r} is not a valid .npy file: {exc}",
                          loc=("body", name)) from None  # fmt: skip
    check_dtype(name, dtype)
    if not all(type(n) is int and n >= 0 for n in shape):
        raise FormatError(f"array {name!r} has an invalid shape {shape!r}", loc=("body", name))
    return NpyHeader(name, dtype, tuple(shape), bool(fortran), stream.tell())
