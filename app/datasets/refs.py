"""References to a dataset's array, wherever fit, evaluate, predict and the *_on_batch routes
take an array: `{"dataset": ID, "array": NAME}`, optionally with `"rows": [start, stop]`.

A reference resolves to a read-only memory map of the stored `.npy` (the rows asked for), so
the engine checks shapes, lengths and labels as it does for inline arrays while no array is
read into memory. A job stores, for each of its arrays that is still such a slice, the
reference itself (dataset, array, rows, sha256) instead of the bytes; a worker opens the same
file. Datasets are immutable, so the id and sha256 name exactly the bytes the job was checked
against."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.core.errors import Conflict, InvalidInput
from app.datasets import repository as repo
from app.datasets.layout import array_key
from app.db.models import DatasetRow
from app.db.scope import SYSTEM, Scope
from app.db.session import unit_of_work
from app.runtime.context import AppContext
from app.runtime.storage import ArtifactStore

REF_KEYS = frozenset({"dataset", "array", "rows"})
Loc = list[str | int]


def is_ref(value: Any) -> bool:
    return isinstance(value, dict) and "dataset" in value and set(value) <= REF_KEYS


def has_refs(value: Any) -> bool:
    if is_ref(value):
        return True
    if isinstance(value, dict):
        return any(has_refs(v) for v in value.values())
    if isinstance(value, list):
        return any(is_ref(v) for v in value)
    return False


@dataclass(frozen=True)
class ArrayRef:
    """Rows [start, stop) of one array of a dataset, as a job stores it."""

    dataset: uuid.UUID
    array: str
    start: int
    stop: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"dataset": str(self.dataset), "array": self.array,
                "rows": [self.start, self.stop], "sha256": self.sha256}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ArrayRef:
        start, stop = d["rows"]
        return cls(uuid.UUID(d["dataset"]), d["array"], int(start), int(stop), d["sha256"])


def open_array(store: ArtifactStore, dataset_id: uuid.UUID, name: str) -> np.memmap:
    """The stored array, memory-mapped read-only. FileNotFoundError when it is not there."""
    path: Path = store.path(array_key(dataset_id, name))
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    assert isinstance(arr, np.memmap)
    return arr


class Resolver:
    """Resolves the references of one request, and finds the reference behind an array the
    engine returns (a row slice of a resolved one)."""

    def __init__(self, ctx: AppContext, *, scope: Scope) -> None:
        """`scope`: the project of the model the request runs (another project's dataset does
        not exist for it)."""
        self.ctx, self.scope = ctx, scope
        self.rows: dict[uuid.UUID, DatasetRow] = {}
        self._bases: dict[int, tuple[np.memmap, DatasetRow, str]] = {}

    @property
    def used(self) -> dict[uuid.UUID, str]:
        """The datasets resolved: id -> sha256."""
        return {i: r.sha256 for i, r in self.rows.items()}

    def resolve(self, value: Any, loc: Loc) -> Any:
        """`value` with every reference replaced by its rows, memory-mapped."""
        if is_ref(value):
            return self._one(value, loc)
        if isinstance(value, dict):
            return {k: self.resolve(v, [*loc, k]) for k, v in value.items()}
        if isinstance(value, list) and any(is_ref(v) for v in value):
            return [self.resolve(v, [*loc, i]) for i, v in enumerate(value)]
        return value

    def _dataset(self, raw: Any, loc: Loc) -> DatasetRow:
        try:
            dataset_id = uuid.UUID(str(raw))
        except ValueError:
            raise InvalidInput("must be a dataset id (a UUID)", loc=[*loc, "dataset"]) from None
        row = self.rows.get(dataset_id)
        if row is None:
            with unit_of_work(self.ctx.sessions) as session:
                row = repo.get_dataset(session, dataset_id=dataset_id, scope=self.scope)
            if row is None:
                raise InvalidInput(f"dataset {dataset_id} does not exist",
                                   loc=[*loc, "dataset"])  # fmt: skip
            self.rows[dataset_id] = row
        return row

    def _one(self, ref: dict[str, Any], loc: Loc) -> np.memmap:
        row = self._dataset(ref["dataset"], loc)
        names = [a["name"] for a in row.arrays]
        name = ref.get("array", "x" if len(names) != 1 else names[0])
        if not isinstance(name, str) or name not in names:
            raise InvalidInput(f"dataset {row.id} has no array {name!r}; it has {names}",
                               loc=[*loc, "array"])  # fmt: skip
        try:
            base = open_array(self.ctx.store, row.id, name)
        except (FileNotFoundError, ValueError) as exc:
            raise Conflict(f"the file of array {name!r} of dataset {row.id} is not in the "
                           "artifact store", loc=[*loc, "dataset"]) from exc  # fmt: skip
        self._bases[id(base)] = (base, row, name)
        n = int(base.shape[0])
        start, stop = 0, n
        if ref.get("rows") is not None:
            rows = ref["rows"]
            ints = isinstance(rows, list) and all(type(v) is int for v in rows)
            ok = ints and len(rows) == 2
            if not ok:
                raise InvalidInput("must be [start, stop], two integers", loc=[*loc, "rows"])
            start, stop = rows
            if not 0 <= start < stop <= n:
                raise InvalidInput(f"rows [{start}, {stop}] are out of range: array {name!r} "
                                   f"has {n} rows, and start < stop is needed",
                                   loc=[*loc, "rows"])  # fmt: skip
        return base[start:stop]  # type: ignore[return-value]

    def ref_of(self, arr: Any) -> ArrayRef | None:
        """The reference behind `arr` when it is a contiguous row slice of a resolved array."""
        if not isinstance(arr, np.ndarray):
            return None
        base: np.ndarray | None = arr
        while base is not None and id(base) not in self._bases:
            base = base.base if isinstance(base.base, np.ndarray) else None
        if base is None:
            return None
        mm, row, name = self._bases[id(base)]
        if arr.dtype != mm.dtype or arr.shape[1:] != mm.shape[1:] or arr.strides != mm.strides:
            return None
        row_bytes = mm.strides[0] if mm.ndim else mm.itemsize
        offset = arr.__array_interface__["data"][0] - mm.__array_interface__["data"][0]
        if row_bytes == 0 or offset % row_bytes:
            return None
        start = offset // row_bytes
        return ArrayRef(row.id, name, start, start + int(arr.shape[0]), row.sha256)


class DatasetMissing(Exception):
    """A job's dataset is gone, or its file is not in this process's artifact store."""


def open_refs(ctx: AppContext, refs: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
    """The arrays a job stored as references (slot -> the rows, memory-mapped), after checking
    that each dataset still exists with the sha256 the job was checked against. A dataset
    deleted since, or a file this process cannot see (an artifact store that is not shared
    with the API), raises DatasetMissing with a message that says which."""
    out: dict[str, np.ndarray] = {}
    parsed = {slot: ArrayRef.from_json(r) for slot, r in refs.items()}
    with unit_of_work(ctx.sessions) as session:
        # The references were checked in the job's project when it was accepted.
        rows = {r.id: r for r in repo.lock_datasets(
            session, dataset_ids={r.dataset for r in parsed.values()}, scope=SYSTEM)}  # fmt: skip
    for slot, ref in sorted(parsed.items()):
        row = rows.get(ref.dataset)
        if row is None or row.sha256 != ref.sha256:
            raise DatasetMissing(f"dataset {ref.dataset} (array {ref.array!r}) no longer exists")
        try:
            arr = open_array(ctx.store, ref.dataset, ref.array)
        except (FileNotFoundError, ValueError) as exc:
            raise DatasetMissing(
                f"the file of array {ref.array!r} of dataset {ref.dataset} is not in this "
                "worker's artifact store: ARTIFACT_DIR must be one folder shared by the API and "
                "every worker"
            ) from exc
        if not ref.stop <= arr.shape[0]:
            raise DatasetMissing(f"dataset {ref.dataset}: array {ref.array!r} has "
                                 f"{arr.shape[0]} rows, fewer than the job reads")  # fmt: skip
        out[slot] = arr[ref.start : ref.stop]
    return out


ON_BATCH_MAX_ROWS = 1 << 20


def in_memory(value: Any) -> Any:
    """`value` with every memory map copied into memory (data of one batch: the *_on_batch
    routes, whose rows are limited)."""
    if isinstance(value, np.memmap):
        if value.shape[0] > ON_BATCH_MAX_ROWS:
            return value  # left to the engine's own limit, which names the field
        return np.array(value)
    if isinstance(value, dict):
        return {k: in_memory(v) for k, v in value.items()}
    if isinstance(value, list):
        return [in_memory(v) for v in value]
    return value
