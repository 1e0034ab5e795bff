"""Converting an uploaded dataset file into one uncompressed .npy file per array.

This is the entry point, `convert`; each format has its own module (npyfile, npz, csvfile,
parquetfile, jsonfile), and the rules every array obeys are in `conversion`. A conversion is pure
(files in, files out: no database, no HTTP) and memory-bounded: arrays are read and written in
chunks of a few tens of megabytes, never whole. On any refusal it raises `FormatError` and leaves
nothing of its own in the output directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.datasets.conversion import ArrayInfo, ConvertLimits, FormatError, check_name
from app.datasets.jsonfile import convert_json
from app.datasets.npyfile import convert_npy
from app.datasets.npywriter import Outputs
from app.datasets.npz import convert_npz

__all__ = ["FORMATS", "ArrayInfo", "ConvertLimits", "FormatError", "convert"]

FORMATS = ("npy", "npz", "csv", "parquet", "json")


def convert(
    raw: Path,
    fmt: str,
    out_dir: Path,
    *,
    array: str = "x",
    label: str | None = None,
    limits: ConvertLimits,
) -> list[ArrayInfo]:
    """Convert the uploaded file `raw`, in format `fmt`, into `out_dir/<name>.npy` files.

    Each output is little-endian, C order, with a standard npy header, fsynced. `array` names
    the single array of an .npy upload, and the feature array stacked from CSV or Parquet scalar
    columns; `label` names the CSV or Parquet column that becomes `y`. `out_dir` is created if
    missing and should hold nothing of the same names.

    `raw` may be consumed: an .npy file that is already little-endian, C order and of an
    accepted dtype is moved into `out_dir` rather than copied. The caller removes `raw` if it
    is still there afterwards.
    """
    if fmt not in FORMATS:
        raise FormatError(
            f"format must be one of {', '.join(FORMATS)}; got {fmt!r}", loc=("query", "format")
        )
    check_name(array, loc=("query", "array"))
    if label is not None and fmt not in ("csv", "parquet"):
        raise FormatError(
            f"label picks a column of a CSV or Parquet file; a {fmt} file has none",
            loc=("query", "label"),
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = Outputs(out_dir, limits)

    def csv() -> list[ArrayInfo]:
        from app.datasets.csvfile import convert_csv  # pyarrow: loaded when first needed

        return convert_csv(raw, outputs, array=array, label=label)

    def parquet() -> list[ArrayInfo]:
        from app.datasets.parquetfile import convert_parquet

        return convert_parquet(raw, outputs, array=array, label=label)

    readers: dict[str, Callable[[], list[ArrayInfo]]] = {
        "npy": lambda: [convert_npy(raw, array, outputs)],
        "npz": lambda: convert_npz(raw, outputs),
        "csv": csv,
        "parquet": parquet,
        "json": lambda: convert_json(raw, outputs),
    }
    try:
        infos = readers[fmt]()
        outputs.commit()
    except BaseException:
        outputs.discard()
        raise
    return infos
