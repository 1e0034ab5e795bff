"""Request and response bodies of the datasets routes, and the reference to a dataset's array
that fit, evaluate, predict and the *_on_batch routes accept wherever an array goes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.db.models import DatasetRow
from app.runtime.schemas import with_example

FORMATS = ("npy", "npz", "csv", "parquet", "json")
DATASET_EXAMPLE: dict[str, Any] = {
    "id": "3f2b9c1e-0000-4000-8000-000000000000", "name": "toy", "description": None,
    "format": "npz",
    "sha256": "f178357e3d1128263ddf7ffdce73921dea995ce0c8b728ef2723d4d25c2f5db3",
    "size_bytes": 554,
    "arrays": [
        {"name": "x", "dtype": "float32", "shape": [4, 2], "bytes": 32, "min": -1.5, "max": 2.0,
         "columns": None},
        {"name": "y", "dtype": "int64", "shape": [4], "bytes": 32, "min": 0.0, "max": 1.0,
         "columns": None},
    ],
    "source_job_id": None, "created_at": "2026-12-07T14:35:16.820071Z",
}  # fmt: skip


class ArrayOut(BaseModel):
    name: str
    dtype: str = Field(description="NumPy's name: float32, uint8, int64, bool, ...")
    shape: list[int]
    bytes: int = Field(description="Of the stored array (uncompressed)")
    min: float | None = Field(description="The least element (for labels and token ids)")
    max: float | None
    columns: list[str] | None = Field(
        default=None, description="The CSV or Parquet columns an `x` array was made of, in order"
    )


class DatasetOut(BaseModel):
    model_config = with_example(DATASET_EXAMPLE)
    id: uuid.UUID
    name: str | None
    description: str | None
    format: str = Field(description="How it came: npy, npz, csv, parquet, json, or predict (the "
                        "outputs of a predict job, `source_job_id`)")  # fmt: skip
    sha256: str = Field(description="Of the bytes uploaded")
    size_bytes: int = Field(description="Of the bytes uploaded")
    arrays: list[ArrayOut]
    source_job_id: uuid.UUID | None = None
    created_at: datetime


class DatasetList(BaseModel):
    model_config = with_example({"items": [DATASET_EXAMPLE], "total": 1, "limit": 20,
                                 "offset": 0})  # fmt: skip
    items: list[DatasetOut]
    total: int
    limit: int
    offset: int


def dataset_out(row: DatasetRow) -> DatasetOut:
    return DatasetOut(
        id=row.id, name=row.name, description=row.description, format=row.format,
        sha256=row.sha256, size_bytes=row.size_bytes,
        arrays=[ArrayOut(**a) for a in row.arrays], source_job_id=row.source_job_id,
        created_at=row.created_at,
    )  # fmt: skip


REF_DOC = (
    'Or a reference to an uploaded dataset\'s array: `{"dataset": ID, "array": NAME}`, '
    'optionally with `"rows": [start, stop]` (0-based, stop excluded) for a part of it'
)
REF_EXAMPLE: dict[str, Any] = {"dataset": "3f2b9c1e-0000-4000-8000-000000000000", "array": "x",
                               "rows": [0, 50000]}  # fmt: skip
