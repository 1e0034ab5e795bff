"""Converting each upload format into .npy files: round trips, dtypes, and per-format rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.datasets import csvsegments
from app.datasets.formats import ArrayInfo, ConvertLimits, FormatError, convert

LIMITS = ConvertLimits(max_bytes=1 << 30)


def run(tmp_path: Path, raw: Path, fmt: str, **kwargs) -> tuple[list[ArrayInfo], Path]:
    out = tmp_path / "out"
    limits = kwargs.pop("limits", LIMITS)
    return convert(raw, fmt, out, limits=limits, **kwargs), out


def refused(tmp_path: Path, raw: Path, fmt: str, **kwargs) -> FormatError:
    out = tmp_path / "out"
    with pytest.raises(FormatError) as caught:
        convert(raw, fmt, out, limits=kwargs.pop("limits", LIMITS), **kwargs)
    assert not out.exists() or list(out.iterdir()) == [], "a refusal must leave nothing behind"
    return caught.value


def load(out: Path, name: str) -> np.ndarray:
    return np.load(out / f"{name}.npy", mmap_mode="r")


def same(stored: np.ndarray, source: np.ndarray) -> None:
    """Bit for bit, dtype included (stored little-endian, C order)."""
    assert stored.dtype == source.dtype.newbyteorder("<")
    assert stored.flags.c_contiguous
    assert stored.shape == source.shape
    assert (
        np.ascontiguousarray(stored).tobytes()
        == np.ascontiguousarray(source, dtype=stored.dtype).tobytes()
    )


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


SOURCES = {
    "uint8": np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28),
    "int32": np.arange(-6, 6, dtype=np.int32).reshape(3, 4),
    "float16": np.linspace(-2, 2, 10, dtype=np.float16),
    "bool": np.array([[True, False], [False, True], [True, True]]),
    "int64": np.array([-(2**63), 2**63 - 1, 0], dtype=np.int64),
    "uint64": np.array([2**64 - 1, 0], dtype=np.uint64),
    "float64": np.array([[1e300, -1e-300], [0.1, 2.0]]),
}


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_npy_round_trips_bit_for_bit(tmp_path: Path, kind: str) -> None:
    source = SOURCES[kind]
    raw = tmp_path / "upload.npy"
    np.save(raw, source)
    [info], out = run(tmp_path, raw, "npy", array="images")
    same(load(out, "images"), source)
    assert info.name == "images" and info.dtype == source.dtype.name
    assert info.shape == source.shape and info.nbytes == source.nbytes
    assert info.min == float(source.min()) and info.max == float(source.max())
    assert info.columns is None


def test_written_headers_are_standard_and_aligned(tmp_path: Path) -> None:
    raw = tmp_path / "upload.npy"
    np.save(raw, np.arange(10, dtype=">i2"))
    _, out = run(tmp_path, raw, "npy")
    with open(out / "x.npy", "rb") as file:
        assert np.lib.format.read_magic(file) == (1, 0)
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
        assert (shape, fortran, dtype) == ((10,), False, np.dtype("<i2"))
        assert file.tell() % 64 == 0


def test_npy_little_endian_c_order_is_moved_not_copied(tmp_path: Path) -> None:
    raw = tmp_path / "upload.npy"
    np.save(raw, SOURCES["int32"])
    inode = raw.stat().st_ino
    _, out = run(tmp_path, raw, "npy")
    assert not raw.exists()
    assert (out / "x.npy").stat().st_ino == inode


@pytest.mark.parametrize(
    "source",
    [
        np.arange(24, dtype=">f4").reshape(2, 3, 4),
        np.asfortranarray(np.arange(60, dtype=np.int16).reshape(3, 4, 5)),
        np.asfortranarray(np.arange(2 * 3 * 4 * 5, dtype=">u2").reshape(2, 3, 4, 5)),
        np.asfortranarray(np.random.default_rng(0).random((1000, 7))),
    ],
    ids=["big-endian", "fortran", "fortran-big-endian", "fortran-2d"],
)
def test_npy_big_endian_and_fortran_are_converted(tmp_path: Path, source: np.ndarray) -> None:
    raw = tmp_path / "upload.npy"
    np.save(raw, source)
    [info], out = run(tmp_path, raw, "npy")
    same(load(out, "x"), source)
    assert info.dtype == source.dtype.name


def test_npy_fortran_order_spanning_several_chunks(tmp_path: Path, monkeypatch) -> None:
    import app.datasets.npyfile as npyfile

    monkeypatch.setattr(npyfile, "CHUNK_BYTES", 4096)
    source = np.asfortranarray(np.arange(300 * 6 * 5, dtype=np.float32).reshape(300, 6, 5))
    raw = tmp_path / "upload.npy"
    np.save(raw, source)
    _, out = run(tmp_path, raw, "npy")
    same(load(out, "x"), source)


def test_npz_round_trips_every_member(tmp_path: Path) -> None:
    arrays = {k: v for k, v in SOURCES.items()}
    arrays["fortran"] = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    arrays["swapped"] = np.arange(5, dtype=">i4")
    for save in (np.savez, np.savez_compressed):
        raw = tmp_path / "upload.npz"
        save(raw, **arrays)
        infos, out = run(tmp_path, raw, "npz")
        assert [i.name for i in infos] == list(arrays)
        for name, source in arrays.items():
            same(load(out, name), source)
        for path in out.iterdir():
            path.unlink()


def test_npz_positional_names_are_accepted(tmp_path: Path) -> None:
    raw = tmp_path / "upload.npz"
    np.savez(raw, np.arange(3), np.ones((2, 2), dtype=np.float32))
    infos, out = run(tmp_path, raw, "npz")
    assert [i.name for i in infos] == ["arr_0", "arr_1"]
    same(load(out, "arr_1"), np.ones((2, 2), dtype=np.float32))


def test_csv_features_and_integer_label(tmp_path: Path) -> None:
    raw = write_csv(
        tmp_path / "a.csv", 'age,"weight, kg",label\n1,2.5,0\n3,4e1,1\r\n 5 , -6E-1 ,2\n\n'
    )
    [x, y], out = run(tmp_path, raw, "csv", label="label")
    same(load(out, "x"), np.array([[1, 2.5], [3, 40], [5, -0.6]], dtype=np.float32))
    same(load(out, "y"), np.array([0, 1, 2], dtype=np.int64))
    assert x.columns == ["age", "weight, kg"] and x.shape == (3, 2)
    assert (y.dtype, y.min, y.max, y.columns) == ("int64", 0.0, 2.0, None)


def test_csv_without_label_stacks_every_column(tmp_path: Path) -> None:
    raw = write_csv(tmp_path / "a.csv", "a,b\n1,2\n3,4\n")
    [x], out = run(tmp_path, raw, "csv", array="features")
    same(load(out, "features"), np.array([[1, 2], [3, 4]], dtype=np.float32))
    assert x.columns == ["a", "b"]


def test_csv_label_with_a_fraction_is_float32(tmp_path: Path, monkeypatch) -> None:
    # Small segments: the label turns float after integer batches were already stored.
    rows = "".join(f"{i},{i % 3}\n" for i in range(5000)) + "7,0.5\n"
    raw = write_csv(tmp_path / "a.csv", "f,t\n" + rows)
    monkeypatch.setattr(csvsegments, "SEGMENT_BYTES", 0)
    limits = ConvertLimits(max_bytes=1 << 20, csv_max_line_bytes=1000)
    [_, y], out = run(tmp_path, raw, "csv", label="t", limits=limits)
    expected = np.array([i % 3 for i in range(5000)] + [0.5], dtype=np.float32)
    same(load(out, "y"), expected)
    assert y.dtype == "float32" and y.max == 2.0


def test_csv_missing_value_names_row_and_column(tmp_path: Path) -> None:
    raw = write_csv(tmp_path / "a.csv", "a,b,c\n1,2,3\n4,,6\n")
    error = refused(tmp_path, raw, "csv")
    assert error.status == 422 and error.loc == ["body", "row", 2, "b"]
    assert "row 2" in error.message and "'b'" in error.message


def test_csv_missing_label_names_row_and_column(tmp_path: Path) -> None:
    raw = write_csv(tmp_path / "a.csv", "a,y\n1,2\n4,\n")
    error = refused(tmp_path, raw, "csv", label="y")
    assert error.loc == ["body", "row", 2, "y"]


def test_csv_text_column_names_column_row_and_value(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(csvsegments, "SEGMENT_BYTES", 0)
    body = "".join(f"{i},{i}\n" for i in range(3000)) + "1,hello there\n"
    raw = write_csv(tmp_path / "a.csv", "a,name\n" + body)
    limits = ConvertLimits(max_bytes=1 << 20, csv_max_line_bytes=1000)
    error = refused(tmp_path, raw, "csv", limits=limits)
    assert error.loc == ["body", "row", 3001, "name"]
    assert "'hello there'" in error.message and "'name'" in error.message


def test_csv_text_label_is_refused(tmp_path: Path) -> None:
    raw = write_csv(tmp_path / "a.csv", "a,kind\n1,cat\n")
    error = refused(tmp_path, raw, "csv", label="kind")
    assert error.loc == ["body", "row", 1, "kind"] and "'cat'" in error.message


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity", "1e39"])
def test_csv_non_finite_values_are_refused(tmp_path: Path, value: str) -> None:
    raw = write_csv(tmp_path / "a.csv", f"a,b\n1,2\n3,{value}\n")
    error = refused(tmp_path, raw, "csv")
    assert error.loc == ["body", "row", 2, "b"]


def test_csv_header_only_is_refused(tmp_path: Path) -> None:
    for text in ("a,b\n", "a,b", "a,b\n\n\n"):
        raw = write_csv(tmp_path / "a.csv", text)
        assert "no data rows" in refused(tmp_path, raw, "csv").message


def test_csv_unknown_label_is_refused(tmp_path: Path) -> None:
    raw = write_csv(tmp_path / "a.csv", "a,b\n1,2\n")
    error = refused(tmp_path, raw, "csv", label="target")
    assert error.loc == ["query", "label"] and "'target'" in error.message


@pytest.mark.parametrize("header", ["a,a", "a,,b", "a, "])
def test_csv_header_names_must_be_unique_and_non_empty(tmp_path: Path, header: str) -> None:
    raw = write_csv(tmp_path / "a.csv", f"{header}\n1,2\n")
    assert refused(tmp_path, raw, "csv").status == 422


def test_csv_wrong_field_count_names_the_line(tmp_path: Path) -> None:
    raw = write_csv(tmp_path / "a.csv", "a,b\n1,2\n3\n")
    error = refused(tmp_path, raw, "csv")
    assert error.loc == ["body", "line", 3]


def test_csv_in_many_segments(tmp_path: Path, monkeypatch) -> None:
    # Segments of about 100 bytes: rows, blank lines and errors far from the first segment.
    monkeypatch.setattr(csvsegments, "SEGMENT_BYTES", 0)
    limits = ConvertLimits(max_bytes=1 << 20, csv_max_line_bytes=100)
    values = np.arange(3000, dtype=np.float32).reshape(1000, 3)
    lines = [",".join(f"{v:g}" for v in row) for row in values]
    text = "a,b,c\n" + "\n".join(lines[:500]) + "\n\n\r\n" + "\r\n".join(lines[500:])
    raw = write_csv(tmp_path / "a.csv", text)
    [x], out = run(tmp_path, raw, "csv", limits=limits)
    same(load(out, "x"), values)
    assert x.shape == (1000, 3)
    (out / "x.npy").unlink()
    lines[700] = "1,2"
    raw = write_csv(tmp_path / "a.csv", "a,b,c\n" + "\n".join(lines) + "\n")
    assert refused(tmp_path, raw, "csv", limits=limits).loc == ["body", "line", 702]
    lines[700] = "1,2," + "3" * 200
    raw = write_csv(tmp_path / "a.csv", "a,b,c\n" + "\n".join(lines) + "\n")
    assert refused(tmp_path, raw, "csv", limits=limits).loc == ["body", "line", 702]
    lines[700] = "1,2,"
    raw = write_csv(tmp_path / "a.csv", "a,b,c\n" + "\n".join(lines) + "\n")
    assert refused(tmp_path, raw, "csv", limits=limits).loc == ["body", "row", 701, "c"]


def fixed(values: np.ndarray) -> pa.Array:
    """A (nested) fixed_size_list array with values' trailing shape."""
    array = pa.array(values.reshape(-1))
    for size in reversed(values.shape[1:]):
        array = pa.FixedSizeListArray.from_arrays(array, size)
    return array


def test_parquet_scalars_label_and_fixed_size_lists(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    masks = rng.random((50, 3)) > 0.5
    table = pa.table(
        {
            "age": pa.array(np.arange(50, dtype=np.int32)),
            "image": fixed(images),
            "height": pa.array(rng.random(50).astype(np.float16)),
            "label": pa.array(np.arange(50, dtype=np.int64) % 10),
            "mask": fixed(masks),
            "flag": pa.array(rng.random(50) > 0.5),
        }
    )
    raw = tmp_path / "t.parquet"
    pq.write_table(table, raw, row_group_size=7)
    infos, out = run(tmp_path, raw, "parquet", label="label")
    assert [i.name for i in infos] == ["x", "y", "image", "mask"]
    assert infos[0].columns == ["age", "height", "flag"]
    x = np.stack(
        [
            np.arange(50, dtype=np.float32),
            table["height"].to_numpy().astype(np.float32),
            table["flag"].to_numpy(zero_copy_only=False).astype(np.float32),
        ],
        axis=1,
    )
    same(load(out, "x"), x)
    same(load(out, "y"), np.arange(50, dtype=np.int64) % 10)
    same(load(out, "image"), images)
    same(load(out, "mask"), masks)
    assert infos[2].shape == (50, 28, 28) and infos[2].max == float(images.max())


def test_parquet_only_list_columns(tmp_path: Path) -> None:
    values = np.arange(4 * 2 * 3, dtype=np.float64).reshape(4, 2, 3)
    raw = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": fixed(values)}), raw)
    [info], out = run(tmp_path, raw, "parquet")
    same(load(out, "x"), values)
    assert info.columns is None


@pytest.mark.parametrize(
    "column",
    [
        pa.array(["a", "b"]),
        pa.array([b"a", b"b"]),
        pa.array([[1], [2, 3]]),
        pa.array([{"a": 1}, {"a": 2}]),
        pa.array(["a", "b"]).dictionary_encode(),
        pa.array([1, 2], pa.date32()),
        pa.array([1, 2], pa.timestamp("s")),
        pa.array([{"k": 1}, {"k": 2}], pa.map_(pa.string(), pa.int64())),
        pa.FixedSizeListArray.from_arrays(pa.array(["a", "b", "c", "d"]), 2),
    ],
    ids=["string", "binary", "list", "struct", "dictionary", "date", "timestamp", "map", "fsl-str"],
)
def test_parquet_refuses_other_column_types(tmp_path: Path, column: pa.Array) -> None:
    raw = tmp_path / "t.parquet"
    pq.write_table(pa.table({"ok": pa.array([1, 2]), "bad": column}), raw)
    error = refused(tmp_path, raw, "parquet")
    assert error.loc == ["body", "bad"] and "'bad'" in error.message


def test_parquet_decimal_is_refused(tmp_path: Path) -> None:
    from decimal import Decimal

    raw = tmp_path / "t.parquet"
    pq.write_table(pa.table({"d": pa.array([Decimal("1.5")])}), raw)
    assert "decimal" in refused(tmp_path, raw, "parquet").message


def test_parquet_nulls_name_column_and_row(tmp_path: Path) -> None:
    raw = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": pa.array([1, 2, None, 4])}), raw, row_group_size=2)
    assert refused(tmp_path, raw, "parquet").loc == ["body", "row", 3, "a"]
    inner = pa.FixedSizeListArray.from_arrays(pa.array([1.0, 2.0, 3.0, None]), 2)
    pq.write_table(pa.table({"v": inner}), raw)
    assert refused(tmp_path, raw, "parquet").loc == ["body", "row", 2, "v"]


def test_parquet_name_conflicts_and_bad_names(tmp_path: Path) -> None:
    raw = tmp_path / "t.parquet"
    two_d = fixed(np.zeros((2, 2)))
    pq.write_table(pa.table({"a": pa.array([1, 2]), "x": two_d}), raw)
    assert "'x'" in refused(tmp_path, raw, "parquet").message
    pq.write_table(pa.table({"a": pa.array([1, 2]), "bad name": two_d}), raw)
    assert refused(tmp_path, raw, "parquet").status == 422
    pq.write_table(pa.table({"a": pa.array([1, 2])}), raw)
    assert refused(tmp_path, raw, "parquet", label="b").loc == ["query", "label"]


def test_parquet_nan_is_refused(tmp_path: Path) -> None:
    raw = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": pa.array([1.0, float("nan")])}), raw)
    assert refused(tmp_path, raw, "parquet").loc == ["body", "row", 2, "a"]


def write_json(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_json_dtypes(tmp_path: Path) -> None:
    arrays = {"x": [[1, 2], [3, 4]], "w": [0.5, 1], "m": [True, False], "e": [[]]}
    raw = write_json(tmp_path / "a.json", {"arrays": arrays})
    infos, out = run(tmp_path, raw, "json")
    same(load(out, "x"), np.array([[1, 2], [3, 4]], dtype=np.int64))
    same(load(out, "w"), np.array([0.5, 1], dtype=np.float32))
    same(load(out, "m"), np.array([True, False]))
    assert infos[3].shape == (1, 0) and infos[3].min is None


@pytest.mark.parametrize(
    ("array", "loc"),
    [
        ([[1, 2], [3]], [1]),
        ([[1, 2], 3], [1]),
        ([1, "a"], [1]),
        ([[1, 2], [None, 2]], [1, 0]),
        ([True, 1], [1]),
        ([1, True], [1]),
        ([1e39], [0]),
        ([2**63], [0]),
        ([], []),
        (3, []),
    ],
)
def test_json_refusals_name_array_and_index(tmp_path: Path, array: object, loc: list) -> None:
    raw = write_json(tmp_path / "a.json", {"arrays": {"v": array}})
    error = refused(tmp_path, raw, "json")
    assert error.status == 422 and error.loc == ["body", "arrays", "v", *loc]


@pytest.mark.parametrize(
    "text",
    [
        '{"arrays": {"v": [1, NaN]}}',
        '{"arrays": {"v": [Infinity]}}',
        '{"arrays": {"v": [1], "v": [2]}}',
        '{"arrays": {"v": [1]}, "more": 1}',
        '{"arrays": {}}',
        '{"arrays": {"bad name": [1]}}',
        "[1, 2]",
        '{"arrays": {"v": [1,',
        '{"arrays": {"v": ' + "[" * 100_000 + "]" * 100_000 + "}}",
        '{"arrays": {"v": ' + "[" * 9 + "1" + "]" * 9 + "}}",
    ],
    ids=["nan", "infinity", "duplicate", "extra", "empty", "name", "list", "cut", "deep", "ndim"],
)
def test_json_refused_documents(tmp_path: Path, text: str) -> None:
    raw = tmp_path / "a.json"
    raw.write_text(text)
    assert refused(tmp_path, raw, "json").status == 422


def test_json_over_its_byte_limit_is_413(tmp_path: Path) -> None:
    raw = write_json(tmp_path / "a.json", {"arrays": {"v": list(range(100))}})
    limits = ConvertLimits(max_bytes=1 << 20, json_max_bytes=64)
    assert refused(tmp_path, raw, "json", limits=limits).status == 413


def test_unknown_format_and_misplaced_label(tmp_path: Path) -> None:
    raw = tmp_path / "a.npy"
    np.save(raw, np.arange(3))
    assert refused(tmp_path, raw, "hdf5").loc == ["query", "format"]
    assert refused(tmp_path, raw, "npy", label="y").loc == ["query", "label"]
    assert refused(tmp_path, raw, "npy", array="9x").loc == ["query", "array"]
