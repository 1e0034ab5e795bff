"""Conversion is memory-bounded: large files add well under 100 MB to peak resident memory.

Each conversion runs in a fresh interpreter that reports the growth of its peak resident set
(VmHWM in /proc/self/status) across the `convert` call, imports excluded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_GROWTH = 100 << 20

SCRIPT = """
import json, sys
from pathlib import Path
from app.datasets.formats import ConvertLimits, convert
import app.datasets.csvfile, app.datasets.parquetfile  # pyarrow is loaded on first use

def peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

raw, fmt, out, label = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4] or None
before = peak()
infos = convert(Path(raw), fmt, out, label=label, limits=ConvertLimits(max_bytes=4 << 30))
print(json.dumps({"growth": peak() - before, "shapes": [list(i.shape) for i in infos]}))
"""


def converted_in_subprocess(raw: Path, fmt: str, out: Path, label: str = "") -> dict:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(raw), fmt, str(out), label],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def space(tmp_path: Path) -> Iterator[Path]:
    if not Path("/proc/self/status").exists():
        pytest.skip("peak memory is read from /proc/self/status (Linux only)")
    if shutil.disk_usage(tmp_path).free < 3 << 30:
        pytest.skip("the memory test needs 3 GB of free disk space for its 1 GiB files")
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)  # pytest keeps recent tmp_paths; not these


def test_converting_a_1_gib_npy_adds_under_100_mb(space: Path) -> None:
    # Big-endian, so every byte is read, swapped, checked and written again (not just moved).
    raw = space / "big.npy"
    rows, width = 1 << 18, 1024
    source = np.lib.format.open_memmap(raw, mode="w+", dtype=">f4", shape=(rows, width))
    # Element i (row-major) holds i % 1000: row r is row (r * width) % 1000 of a 1000-row table.
    table = ((np.arange(1000)[:, None] + np.arange(width)) % 1000).astype(">f4")
    step = 1 << 14
    for start in range(0, rows, step):
        source[start : start + step] = table[np.arange(start, start + step) * width % 1000]
    source.flush()
    del source

    report = converted_in_subprocess(raw, "npy", space / "out")

    assert report["shapes"] == [[rows, width]]
    assert report["growth"] < MAX_GROWTH, f"peak memory grew by {report['growth']} bytes"
    stored = np.load(space / "out" / "x.npy", mmap_mode="r")
    assert stored.dtype == np.dtype("<f4")
    assert stored[0, :3].tolist() == [0.0, 1.0, 2.0]
    assert float(stored[-1, -1]) == float((rows * width - 1) % 1000)


def test_converting_a_large_csv_adds_under_100_mb(space: Path) -> None:
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, (2000, 101))
    lines = "\n".join(",".join(map(str, row)) for row in block) + "\n"
    raw = space / "big.csv"
    with open(raw, "w") as file:
        file.write(",".join(["label", *(f"p{i}" for i in range(100))]) + "\n")
        for _ in range(200):  # about 200 MB, 400,000 rows
            file.write(lines)

    report = converted_in_subprocess(raw, "csv", space / "out", label="label")

    assert report["shapes"] == [[400_000, 100], [400_000]]
    assert report["growth"] < MAX_GROWTH, f"peak memory grew by {report['growth']} bytes"
    x = np.load(space / "out" / "x.npy", mmap_mode="r")
    assert np.array_equal(x[-2000:], block[:, 1:].astype(np.float32))


def test_converting_a_large_parquet_row_group_adds_under_100_mb(space: Path) -> None:
    # One row group of 200,000 images of 28 x 28 bytes (about 160 MB), read in small batches.
    rows = 200_000
    images = np.random.default_rng(0).integers(0, 256, (rows, 28 * 28), dtype=np.uint8)
    table = pa.table(
        {
            "image": pa.FixedSizeListArray.from_arrays(pa.array(images.reshape(-1)), 28 * 28),
            "label": pa.array(np.arange(rows) % 10),
        }
    )
    raw = space / "big.parquet"
    pq.write_table(table, raw, row_group_size=rows, compression="none", use_dictionary=False)
    del table

    report = converted_in_subprocess(raw, "parquet", space / "out", label="label")

    assert report["shapes"] == [[rows], [rows, 28 * 28]]
    assert report["growth"] < MAX_GROWTH, f"peak memory grew by {report['growth']} bytes"
    stored = np.load(space / "out" / "image.npy", mmap_mode="r")
    assert np.array_equal(stored[-100:], images[-100:])
