"""The .npz format (a zip of .npy members), read as hostile input.

Before `zipfile` parses the central directory, its entry count and size are checked from the
end-of-central-directory record, so a crafted directory cannot make it allocate. Members must be
`<name>.npy` with a valid array name, unique, unencrypted, stored or deflated, and must not
overlap. Each member's npy header is read from the stream and the size it implies must equal the
member's declared size. Members are then decompressed here, not by `zipfile`: the output is
capped at the declared size, a stream that would inflate further, ends early, is corrupt, or
fails its CRC is a 422. Nothing is ever unpickled.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
import zipfile
import zlib
from pathlib import Path

from app.datasets.conversion import ArrayInfo, FormatError, check_dtype, clip
from app.datasets.npyfile import (
    NpyHeader,
    check_data_size,
    read_c_order,
    read_fortran_order,
    read_header,
)
from app.datasets.npywriter import Outputs

MEMBER_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]{0,63})\.npy")
_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_MAX_DIRECTORY_ENTRY = 46 + 3 * 0xFFFF
_INPUT_BYTES = 1 << 20


def _fail(message: str, *loc: str | int) -> FormatError:
    return FormatError(f"not a valid .npz file: {message}", loc=("body", *loc))


def check_directory_size(fd: int, size: int, max_entries: int) -> None:
    """Read the end-of-central-directory record and bound what zipfile will read."""
    tail_start = max(0, size - (_EOCD.size + 0xFFFF))
    tail = os.pread(fd, size - tail_start, tail_start)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise _fail("no end-of-central-directory record (not a zip archive, or truncated)")
    _, _, _, _, entries, directory_bytes, _, _ = _EOCD.unpack_from(tail, at)
    if (entries == 0xFFFF or directory_bytes == 0xFFFFFFFF) and at >= _EOCD64_LOCATOR.size:
        _, _, record_at, _ = _EOCD64_LOCATOR.unpack_from(tail, at - _EOCD64_LOCATOR.size)
        record = os.pread(fd, _EOCD64.size, record_at) if record_at < size else b""
        if len(record) != _EOCD64.size or record[:4] != b"PK\x06\x06":
            raise _fail("a broken zip64 end-of-central-directory record")
        entries, directory_bytes = _EOCD64.unpack(record)[7], _EOCD64.unpack(record)[8]
    if entries > max_entries:
        raise _fail(f"it has {entries} members; a dataset holds at most {max_entries} arrays")
    if directory_bytes > max_entries * _MAX_DIRECTORY_ENTRY:
        raise _fail(f"its central directory claims {directory_bytes} bytes for {entries} members")


class MemberStream:
    """One member's uncompressed bytes, capped at its declared size and CRC-checked at the end."""

    def __init__(self, fd: int, info: zipfile.ZipInfo, data_offset: int, name: str) -> None:
        self.fd, self.info, self.name = fd, info, name
        self._input_at = data_offset
        self._input_left = info.compress_size
        self._pending = b""
        self._left = info.file_size
        self._crc = 0
        self._done = 0
        self._inflate = (
            zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
        )

    def _fill(self, limit: int = _INPUT_BYTES) -> bytes:
        size = min(limit, self._input_left)
        data = os.pread(self.fd, size, self._input_at) if size else b""
        if len(data) != size:
            raise _fail(f"member {self.info.filename!r} is truncated", self.name)
        self._input_at += size
        self._input_left -= size
        return data

    def _inflate_some(self, wanted: int) -> bytes:
        assert self._inflate is not None
        if not self._pending:
            self._pending = self._fill()
        try:
            out = self._inflate.decompress(self._pending, wanted)
        except zlib.error as exc:
            raise _fail(
                f"member {self.info.filename!r} has corrupt deflate data ({exc})", self.name
            ) from None
        self._pending = self._inflate.unconsumed_tail
        if not out and not self._pending and (self._inflate.eof or self._input_left == 0):
            raise _fail(
                f"member {self.info.filename!r} inflates to {self._done} bytes but declares "
                f"{self.info.file_size}",
                self.name,
            )
        return out

    def read(self, size: int = -1, /) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        parts: list[bytes] = []
        got = 0
        while got < size:
            if self._inflate is None:
                part = self._fill(size - got)
                if not part:
                    break
            else:
                part = self._inflate_some(size - got)
            parts.append(part)
            got += len(part)
            self._done += len(part)
        data = b"".join(parts)
        self._crc = zlib.crc32(data, self._crc)
        self._left -= len(data)
        return data

    def tell(self) -> int:
        return self._done

    def finish(self) -> None:
        """After all declared bytes were read: nothing may follow, and the CRC must match."""
        inflate = self._inflate
        while inflate is not None and not inflate.eof:
            if not self._pending and self._input_left:
                self._pending = self._fill()
            try:
                extra = inflate.decompress(self._pending, 1)
            except zlib.error as exc:
                raise _fail(
                    f"member {self.info.filename!r} has corrupt deflate data ({exc})", self.name
                ) from None
            self._pending = inflate.unconsumed_tail
            if extra:
                raise _fail(
                    f"member {self.info.filename!r} inflates to more than the "
                    f"{self.info.file_size} bytes it declares",
                    self.name,
                )
            if not self._pending and not self._input_left and not inflate.eof:
                raise _fail(
                    f"member {self.info.filename!r} has a truncated deflate stream", self.name
                )
        if self._crc != self.info.CRC:
            raise _fail(f"member {self.info.filename!r} fails its CRC-32 check", self.name)


def checked_members(archive: zipfile.ZipFile, size: int) -> list[tuple[str, zipfile.ZipInfo]]:
    members: list[tuple[str, zipfile.ZipInfo]] = []
    seen: set[str] = set()
    for info in archive.infolist():
        match = MEMBER_NAME.fullmatch(info.filename)
        if match is None:
            raise _fail(
                f"member {clip(repr(info.filename))} is not named <array name>.npy "
                "(array names match [A-Za-z_][A-Za-z0-9_]{0,63}; no folders)"
            )
        name = match.group(1)
        if name in seen:
            raise _fail(f"member {info.filename!r} appears twice", name)
        seen.add(name)
        if info.flag_bits & 0x41:
            raise _fail(f"member {info.filename!r} is encrypted", name)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _fail(
                f"member {info.filename!r} uses compression method {info.compress_type}; only "
                "0 (stored) and 8 (deflated) are accepted",
                name,
            )
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise _fail(f"stored member {info.filename!r} has two different sizes", name)
        if info.header_offset + _LOCAL_HEADER.size + info.compress_size > size:
            raise _fail(f"member {info.filename!r} extends past the end of the file", name)
        members.append((name, info))
    if not members:
        raise _fail("it holds no arrays")
    return members


def data_offset(fd: int, info: zipfile.ZipInfo, size: int, name: str) -> int:
    """Where the member's data starts, from its local header (which must agree)."""
    raw = os.pread(fd, _LOCAL_HEADER.size, info.header_offset)
    if len(raw) != _LOCAL_HEADER.size or raw[:4] != b"PK\x03\x04":
        raise _fail(f"member {info.filename!r} has no valid local header", name)
    fields = _LOCAL_HEADER.unpack(raw)
    name_length, extra_length, flags = fields[10], fields[11], fields[3]
    local_name = os.pread(fd, name_length, info.header_offset + _LOCAL_HEADER.size)
    if local_name != info.orig_filename.encode("utf-8" if flags & 0x800 else "cp437", "replace"):
        raise _fail(f"member {info.filename!r} has a different name in its local header", name)
    if flags & 0x41:
        raise _fail(f"member {info.filename!r} is encrypted", name)
    start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    if start + info.compress_size > size:
        raise _fail(f"member {info.filename!r} extends past the end of the file", name)
    return start


def convert_npz(raw: Path, outputs: Outputs) -> list[ArrayInfo]:
    size = raw.stat().st_size
    fd = os.open(raw, os.O_RDONLY)
    try:
        check_directory_size(fd, size, outputs.limits.max_arrays)
        try:
            with zipfile.ZipFile(raw) as archive:
                members = checked_members(archive, size)
        except FormatError:
            raise
        except Exception as exc:  # zipfile reports a bad archive in many exception types
            raise _fail(clip(str(exc) or type(exc).__name__, 200)) from None
        plans: list[tuple[zipfile.ZipInfo, int, NpyHeader]] = []
        spans: list[tuple[int, int, str]] = []
        for name, info in members:
            start = data_offset(fd, info, size, name)
            spans.append((start, start + info.compress_size, info.filename))
            header = read_header(MemberStream(fd, info, start, name), name, outputs.limits)
            check_data_size(header, info.file_size - header.data_offset, "the member")
            outputs.expect(sum(plan[2].nbytes for plan in plans) + header.nbytes)
            plans.append((info, start, header))
        spans.sort()
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            if start < end:
                raise _fail(f"members {first!r} and {second!r} overlap")
        return [_convert_member(fd, info, start, header, outputs) for info, start, header in plans]
    finally:
        os.close(fd)


def _convert_member(
    fd: int, info: zipfile.ZipInfo, start: int, header: NpyHeader, outputs: Outputs
) -> ArrayInfo:
    name = header.name
    stream = MemberStream(fd, info, start, name)
    stream.read(header.data_offset)
    writer = outputs.writer(name, check_dtype(name, header.dtype), header.tail)
    if not header.fortran_order:
        read_c_order(stream, header, writer, writer.stats)
        stream.finish()
        return writer.finish(header.shape[0])
    # Fortran order needs positioned reads: inflate the data to a scratch file first.
    scratch = outputs.scratch(name)
    try:
        with open(scratch, "xb") as file:
            while chunk := stream.read(16 << 20):
                file.write(chunk)
        stream.finish()
        scratch_fd = os.open(scratch, os.O_RDONLY)
        try:
            read_fortran_order(scratch_fd, 0, header, writer)
        finally:
            os.close(scratch_fd)
    finally:
        scratch.unlink(missing_ok=True)
    return writer.finish(header.shape[0])
