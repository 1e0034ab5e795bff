"""Hostile uploads: each is a 4xx FormatError that leaves the output directory empty."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.datasets.formats import ConvertLimits, FormatError, convert

LIMITS = ConvertLimits(max_bytes=1 << 30)


def refused(tmp_path: Path, data: bytes, fmt: str, **kwargs) -> FormatError:
    raw = tmp_path / f"upload.{fmt}"
    raw.write_bytes(data)
    out = tmp_path / "out"
    with pytest.raises(FormatError) as caught:
        convert(raw, fmt, out, limits=kwargs.pop("limits", LIMITS), **kwargs)
    assert list(out.iterdir()) == [], "a refusal must leave nothing behind"
    assert caught.value.status in (413, 422)
    return caught.value


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_header(descr: str, shape: tuple, fortran: bool = False, version: int = 1) -> bytes:
    text = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    text += " " * (-(len(text) + 11) % 64) + "\n"
    size = struct.pack("<H" if version == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + size + text.encode("latin1")


# --- .npy --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (npy(np.arange(10.0))[:-1], "fewer"),
        (npy(np.arange(10.0)) + b"\0", "more"),
        (npy_header("<f8", (10**12,)) + b"\0" * 64, "(1000000000000,)"),
        (npy_header("<f8", (10**6, 10**6, 10**6)), "fewer"),
        (b"not an npy file at all", "not a valid .npy"),
        (npy_header("<f8", (2,))[:20], "not a valid .npy"),
        (b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 65535, "not a valid .npy"),
        (npy_header("<f8", (1,), version=3) + b"\0" * 8, "version 3.0"),
        (npy(np.array([1, "a"], dtype=object)), "object"),
        (npy(np.array(["ab"])), "<U2"),
        (npy(np.zeros(2, dtype=[("a", "<i4"), ("b", "<f4")])), "accepted dtypes"),
        (npy(np.zeros(2, dtype=np.complex64)), "complex64"),
        (npy(np.zeros(2, dtype="datetime64[s]")), "datetime64"),
        (npy(np.float32(3.0)), "axes"),
        (npy(np.zeros((0, 3), dtype=np.float32)), "at least one row"),
        (npy(np.zeros((1,) * 9, dtype=np.float32)), "axes"),
        (npy_header("(2,)<f4", (3,)) + b"\0" * 24, "accepted dtypes"),
        (npy_header("__import__('os').system('false')", (1,)) + b"\0", "not a valid .npy"),
        (npy_header("|u1", (2, 70_000), fortran=True) + b"\0" * 140_000, "Fortran order"),
    ],
    ids=[
        "truncated",
        "trailing",
        "10**12-elements",
        "10**18-elements",
        "garbage",
        "cut-header",
        "huge-header",
        "version-3",
        "object",
        "unicode",
        "structured",
        "complex",
        "datetime",
        "scalar",
        "no-rows",
        "9-axes",
        "subarray",
        "code-in-descr",
        "fortran-wide-rows",
    ],
)
def test_npy_refusals(tmp_path: Path, data: bytes, words: str) -> None:
    error = refused(tmp_path, data, "npy")
    assert error.status == 422 and words in error.message


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_npy_non_finite_names_array_and_index(tmp_path: Path, value: float) -> None:
    source = np.zeros((4, 3), dtype=np.float16)
    source[2, 1] = value
    error = refused(tmp_path, npy(source), "npy", array="weights")
    assert error.loc == ["body", "weights", 2, 1] and "'weights'" in error.message


def test_npy_bool_with_other_bytes(tmp_path: Path) -> None:
    data = bytearray(npy(np.array([True, False, True])))
    data[-1] = 7
    assert refused(tmp_path, bytes(data), "npy").loc == ["body", "x", 2]


def test_npy_over_the_byte_limit_is_413_before_writing(tmp_path: Path) -> None:
    limits = ConvertLimits(max_bytes=79)
    error = refused(tmp_path, npy(np.arange(10.0)), "npy", limits=limits)
    assert error.status == 413


# --- .npz, with zip archives written byte by byte ----------------------------------------------


@dataclass
class Member:
    name: str
    data: bytes
    method: int = 8
    flags: int = 0
    crc: int | None = None
    file_size: int | None = None
    compressed: bytes | None = None


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def zip_bytes(members: list[Member]) -> bytes:
    body, directory = b"", b""
    for m in members:
        payload = m.compressed
        if payload is None:
            payload = deflate(m.data) if m.method == 8 else m.data
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        size = len(m.data) if m.file_size is None else m.file_size
        name = m.name.encode()
        fields = (20, m.flags, m.method, 0, 0x21, crc, len(payload), size, len(name))
        local = struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, *fields[1:], 0)
        directory += struct.pack(
            "<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, *fields[1:], 0, 0, 0, 0, 0, len(body)
        )
        directory += name
        body += local + name + payload
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory), len(body), 0
    )
    return body + directory + end


def test_handmade_zip_is_a_valid_npz(tmp_path: Path) -> None:
    data = zip_bytes([Member("a.npy", npy(np.arange(5))), Member("b.npy", npy(np.ones(2)), 0)])
    raw = tmp_path / "ok.npz"
    raw.write_bytes(data)
    convert(raw, "npz", tmp_path / "out", limits=LIMITS)
    assert np.load(tmp_path / "out" / "a.npy").tolist() == [0, 1, 2, 3, 4]


GOOD = npy(np.arange(100.0))


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([Member("x.npy", GOOD, file_size=len(GOOD) + 100)], "the member holds"),
        ([Member("x.npy", GOOD, file_size=len(GOOD) - 8)], "the member holds"),
        ([Member("x.npy", GOOD, crc=zlib.crc32(GOOD) ^ 1)], "CRC"),
        ([Member("x.npy", GOOD, method=0, crc=zlib.crc32(GOOD) ^ 1)], "CRC"),
        ([Member("x.npy", GOOD, compressed=b"\xff" * 64)], "corrupt deflate"),
        ([Member("x.npy", GOOD, compressed=deflate(GOOD)[:-30])], "x.npy"),
        ([Member("x.npy", GOOD, flags=1)], "encrypted"),
        ([Member("x.npy", GOOD, method=6)], "method 6"),
        ([Member("x.npy", GOOD, method=12)], "method 12"),
        ([Member("x.npy", GOOD, method=14)], "method 14"),
        ([Member("x.npy", GOOD, method=99, flags=1)], "x.npy"),
        ([Member("x.npy", GOOD, method=0, file_size=len(GOOD) - 8)], "two different sizes"),
        ([Member("d/x.npy", GOOD)], "no folders"),
        ([Member("d/", b"", method=0)], "no folders"),
        ([Member("x.txt", GOOD)], "<array name>.npy"),
        ([Member("1x.npy", GOOD)], "<array name>.npy"),
        ([Member("x.npy", GOOD), Member("x.npy", GOOD)], "twice"),
        ([], "no arrays"),
        ([Member("o.npy", npy(np.array([{}], dtype=object)))], "object"),
    ],
    ids=[
        "size-too-big",
        "size-too-small",
        "bad-crc",
        "bad-crc-stored",
        "corrupt-deflate",
        "cut-deflate",
        "encrypted",
        "implode",
        "bzip2",
        "lzma",
        "aes",
        "stored-sizes-differ",
        "folder",
        "directory",
        "not-npy",
        "bad-name",
        "duplicate",
        "empty",
        "object",
    ],
)
def test_npz_refusals(tmp_path: Path, members: list[Member], words: str) -> None:
    error = refused(tmp_path, zip_bytes(members), "npz")
    assert error.status == 422 and words in error.message


def test_npz_member_inflating_beyond_its_declared_size(tmp_path: Path) -> None:
    # The member declares a one-element array (header + 8 bytes, with a matching CRC) but its
    # deflate stream goes on for 64 MB: reading stops at the declared size and refuses.
    declared = npy(np.zeros(1))
    stream = deflate(declared + b"\0" * (64 << 20))
    member = Member("x.npy", declared, compressed=stream)
    error = refused(tmp_path, zip_bytes([member]), "npz")
    assert "more than" in error.message


def test_npz_zip_bomb_within_declared_sizes_is_413(tmp_path: Path) -> None:
    # A 10**4 x 10**4 float64 header (800 MB) with sizes that agree: refused from the header.
    header = npy_header("<f8", (10**4, 10**4))
    member = Member("x.npy", header, file_size=len(header) + 8 * 10**8, crc=0)
    error = refused(tmp_path, zip_bytes([member]), "npz", limits=ConvertLimits(max_bytes=1 << 20))
    assert error.status == 413


def test_npz_total_over_the_limit_is_413(tmp_path: Path) -> None:
    members = [Member(f"a{i}.npy", npy(np.zeros(100))) for i in range(3)]
    limits = ConvertLimits(max_bytes=2000)
    assert refused(tmp_path, zip_bytes(members), "npz", limits=limits).status == 413


def test_npz_with_too_many_members(tmp_path: Path) -> None:
    members = [Member(f"a{i}.npy", npy(np.zeros(1))) for i in range(5)]
    limits = ConvertLimits(max_bytes=1 << 20, max_arrays=4)
    assert "at most 4" in refused(tmp_path, zip_bytes(members), "npz", limits=limits).message


def test_npz_members_sharing_data_are_refused(tmp_path: Path) -> None:
    data = zip_bytes([Member("a.npy", GOOD), Member("b.npy", GOOD)])
    # Point the second directory entry at the first local header.
    second = data.rfind(b"PK\x01\x02")
    data = data[: second + 42] + struct.pack("<L", 0) + data[second + 46 :]
    assert refused(tmp_path, data, "npz").status == 422


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_npz(tmp_path: Path, keep: float) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, a=np.arange(1000.0), b=np.ones((10, 10)))
    data = buffer.getvalue()
    refused(tmp_path, data[: int(len(data) * keep)], "npz")


def test_garbage_npz(tmp_path: Path) -> None:
    refused(tmp_path, np.random.default_rng(0).bytes(5000), "npz")
    refused(tmp_path, b"PK\x05\x06" + b"\0" * 18, "npz")


# --- CSV ---------------------------------------------------------------------------------------


def test_csv_with_a_million_columns_is_refused_from_the_header(tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(10**6)).encode()
    error = refused(tmp_path, header + b"\n" + b"1," * (10**6 - 1) + b"1\n", "csv")
    assert "65536 columns" in error.message and error.loc == ["body", "line", 1]
    short = b",".join([b"a"] * 10**6)  # fits in the line limit: counted after parsing
    assert "columns" in refused(tmp_path, short + b"\n1\n", "csv").message


def test_csv_with_a_10_mb_line(tmp_path: Path) -> None:
    data = b"a,b\n1,2\n3," + b"4" * (10 << 20) + b"\n5,6\n"
    error = refused(tmp_path, data, "csv")
    assert error.loc == ["body", "line", 3] and error.status == 422


def test_csv_without_a_final_newline_over_the_line_limit(tmp_path: Path) -> None:
    limits = ConvertLimits(max_bytes=1 << 20, csv_max_line_bytes=100)
    error = refused(tmp_path, b"a\n1\n" + b"2" * 200, "csv", limits=limits)
    assert error.loc == ["body", "line", 3]


def test_csv_over_the_byte_limit_is_413(tmp_path: Path) -> None:
    data = b"a,b\n" + b"1,2\n" * 1000
    assert refused(tmp_path, data, "csv", limits=ConvertLimits(max_bytes=4000)).status == 413


@pytest.mark.parametrize(
    "data",
    [b"", b"\n", b"\xff\xfe,\x00\n1,2\n", b"a,b\n\xff\xfe,1\n", b'a,b\n"1,2\n', b"a\n0x10\n"],
    ids=["empty", "blank", "binary-header", "binary-value", "open-quote", "hex"],
)
def test_csv_malformed(tmp_path: Path, data: bytes) -> None:
    assert refused(tmp_path, data, "csv").status == 422


def test_csv_nan_in_float_data(tmp_path: Path) -> None:
    error = refused(tmp_path, b"a,b\n1.5,2\n2.5,NaN\n", "csv")
    assert error.loc == ["body", "row", 2, "b"]


# --- Parquet and JSON --------------------------------------------------------------------------


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_truncated_and_garbage_parquet(tmp_path: Path, keep: float) -> None:
    data = parquet_bytes(pa.table({"a": pa.array(np.arange(1000.0))}))
    refused(tmp_path, data[: int(len(data) * keep)], "parquet")
    refused(tmp_path, data[:-12] + b"\xff" * 8 + b"PAR1", "parquet")
    refused(tmp_path, b"PAR1" + np.random.default_rng(0).bytes(4000) + b"PAR1", "parquet")


def test_parquet_over_the_byte_limit_is_413(tmp_path: Path) -> None:
    data = parquet_bytes(pa.table({"a": pa.array(np.zeros(10**5))}))
    error = refused(tmp_path, data, "parquet", limits=ConvertLimits(max_bytes=10**5))
    assert error.status == 413


def test_json_with_too_many_arrays(tmp_path: Path) -> None:
    document = '{"arrays": {' + ", ".join(f'"a{i}": [1]' for i in range(5)) + "}}"
    limits = ConvertLimits(max_bytes=1 << 20, max_arrays=4)
    assert refused(tmp_path, document.encode(), "json", limits=limits).status == 422


def test_the_canonical_header_reads_what_numpys_parser_reads() -> None:
    """npy_in_memory reads a header as np.save writes it without numpy's literal parser; what
    it reads must be what read_header reads, and any other header goes to read_header."""
    from app.datasets.npyfile import _canonical_header, read_header

    limits = ConvertLimits(max_bytes=1 << 30)
    arrays = [np.zeros((1, 784), np.float32), np.ones(5, ">f8"), np.zeros((2, 3, 4), np.int16),
              np.asfortranarray(np.zeros((3, 2), np.uint8)), np.zeros((7, 1), bool),
              np.zeros((2,) * 8, "<i8"), np.zeros((10**6, 0), np.float16)]  # fmt: skip
    for a in arrays:
        buf = io.BytesIO()
        np.save(buf, a, allow_pickle=False)
        data = buf.getvalue()
        fast = _canonical_header(data, "x", limits)
        assert fast is not None, a.dtype
        assert fast == read_header(io.BytesIO(data), "x", limits)
    canonical = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }"
    others = [canonical.replace(b"'<f4'", b"'<c8'"),  # another dtype: numpy's parser says why
              canonical.replace(b", }", b"}"), canonical.replace(b"(1, 2)", b"(1, 2.0)"),
              canonical.replace(b"'descr'", b"'shape': (3,), 'descr'"),
              canonical.replace(b"(1, 2)", b"(3)"), canonical.replace(b"(1, 2)", b"(03,)"),
              canonical.replace(b"'<f4'", b"'<f1'"), canonical.replace(b"'<f4'", b"'|b2'"),
              b"{'fortran_order': False, 'descr': '<f4', 'shape': (1, 2), }"]  # fmt: skip
    for header in others:
        header += b" " * (-(len(header) + 11) % 64) + b"\n"
        data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(8)
        assert _canonical_header(data, "x", limits) is None, header
