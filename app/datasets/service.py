"""Use cases of the datasets domain: store an upload (converted to one `.npy` file per array,
durable before its row is committed), read, list, download and delete datasets. A dataset is
immutable; a queued or running job that reads it keeps it from being deleted."""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.auth.quotas import require_room, stored_bytes_left
from app.core.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from app.datasets import repository as repo
from app.datasets.formats import ArrayInfo, ConvertLimits, FormatError, convert
from app.datasets.layout import array_key, dataset_prefix
from app.datasets.npyfile import npy_in_memory
from app.db.models import DatasetRow
from app.db.scope import Scope
from app.db.session import unit_of_work
from app.runtime.context import AppContext
from app.runtime.jsonsafe import check_storable

log = logging.getLogger(__name__)
NAME_MAX = 200


def convert_limits(ctx: AppContext, max_bytes: int | None = None) -> ConvertLimits:
    return ConvertLimits(max_bytes=max_bytes or ctx.settings.dataset_max_bytes)


def array_record(info: ArrayInfo) -> dict[str, object]:
    return {"name": info.name, "dtype": info.dtype, "shape": list(info.shape),
            "bytes": info.nbytes, "min": info.min, "max": info.max,
            "columns": info.columns}  # fmt: skip


def check_room(ctx: AppContext, *, scope: Scope, size: int) -> None:
    """Refuse an upload of `size` bytes (0 when the body is chunked) before it streams, when
    the project's stored bytes would pass its quota."""
    with unit_of_work(ctx.sessions) as session:
        require_room(session, settings=ctx.settings, project_id=scope.home, stored_bytes=size)


def create_dataset(
    ctx: AppContext,
    *,
    scope: Scope,
    raw: Path,
    fmt: str,
    sha256: str,
    size: int,
    array: str,
    label: str | None,
    name: str | None,
    description: str | None,
) -> DatasetRow:
    """Convert the uploaded file `raw` (consumed) into the dataset's arrays, make them durable,
    then commit the row. Nothing stays behind on any error."""
    check_storable(name, ["query", "name"])
    check_storable(description, ["query", "description"])
    dataset_id = uuid.uuid4()
    # The arrays may hold far more than the upload (a compressed .npz, CSV text): converting
    # stops once they would pass what the project may still store.
    with unit_of_work(ctx.sessions) as session:
        left = stored_bytes_left(session, settings=ctx.settings, project_id=scope.home)
    check_room(ctx, scope=scope, size=1)
    out = ctx.store.temp_dir("dataset")
    committed = False
    try:
        try:
            limits = convert_limits(ctx, min(left, ctx.settings.dataset_max_bytes))
            infos = convert(raw, fmt, out, array=array, label=label, limits=limits)
        except FormatError as exc:
            if exc.status == 413 and left < ctx.settings.dataset_max_bytes:
                check_room(ctx, scope=scope, size=left + 1)  # raises the quota's 409
            error = PayloadTooLarge if exc.status == 413 else InvalidInput
            raise error(exc.message, loc=exc.loc) from exc
        ctx.store.commit_dir(out, dataset_prefix(dataset_id))
        committed = True
        stored = sum(i.nbytes for i in infos)
        row = DatasetRow(
            id=dataset_id, name=name, description=description, format=fmt, sha256=sha256,
            size_bytes=size, stored_bytes=stored, arrays=[array_record(i) for i in infos],
            project_id=scope.home,
        )  # fmt: skip
        with unit_of_work(ctx.sessions) as session:
            require_room(session, settings=ctx.settings, project_id=scope.home,
                         stored_bytes=stored)  # fmt: skip
            repo.add_dataset(session, row=row)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        if committed:
            ctx.store.delete_prefix(dataset_prefix(dataset_id))
        raise
    finally:
        raw.unlink(missing_ok=True)
    log.info("dataset %s stored: %s, %d arrays", dataset_id, fmt, len(infos))
    return row


def get_dataset(ctx: AppContext, *, scope: Scope, dataset_id: uuid.UUID) -> DatasetRow:
    with unit_of_work(ctx.sessions) as session:
        row = repo.get_dataset(session, dataset_id=dataset_id, scope=scope)
    if row is None:
        raise NotFound(f"dataset {dataset_id} does not exist", loc=["path", "dataset_id"])
    return row


def list_datasets(
    ctx: AppContext, *, scope: Scope, limit: int, offset: int, sha256: str | None = None
) -> tuple[Sequence[DatasetRow], int]:
    if sha256 is not None:
        # A look-up for bytes to reuse: only the caller's own project's datasets, even for an
        # admin, since a job reads only its model's project's datasets.
        scope = scope.within(scope.home)
    with unit_of_work(ctx.sessions) as session:
        return repo.list_datasets(session, scope=scope, limit=limit, offset=offset, sha256=sha256)


def array_file(ctx: AppContext, *, scope: Scope, dataset_id: uuid.UUID, name: str) -> Path:
    """The stored `.npy` file of one array, for download."""
    row = get_dataset(ctx, scope=scope, dataset_id=dataset_id)
    if name not in {a["name"] for a in row.arrays}:
        names = [a["name"] for a in row.arrays]
        raise NotFound(f"dataset {dataset_id} has no array {name!r}; it has {names}",
                       loc=["path", "name"])  # fmt: skip
    path = ctx.store.path(array_key(dataset_id, name))
    if not path.is_file():
        log.error("dataset %s: array %r is missing from the artifact store", dataset_id, name)
        raise Conflict(f"the file of array {name!r} of dataset {dataset_id} is not in the "
                       "artifact store", loc=["path", "name"])  # fmt: skip
    return path


def delete_dataset(ctx: AppContext, *, scope: Scope, dataset_id: uuid.UUID) -> None:
    with unit_of_work(ctx.sessions) as session:
        if repo.get_dataset_for_update(session, dataset_id=dataset_id, scope=scope) is None:
            raise NotFound(f"dataset {dataset_id} does not exist", loc=["path", "dataset_id"])
        readers = repo.active_jobs_reading(session, dataset_id=dataset_id)
        if readers:
            raise Conflict(f"dataset {dataset_id} is read by the queued or running job "
                           f"{readers[0]}; cancel it or wait for it to end",
                           loc=["path", "dataset_id"])  # fmt: skip
        repo.delete_dataset(session, dataset_id=dataset_id)
    # Files go only after the row: a crash here leaves orphan files, never a row without them.
    ctx.store.delete_prefix(dataset_prefix(dataset_id))


class BodyArrays:
    """The arrays of an `.npy` or `.npz` request body (predict's binary input), checked as an
    upload is (no pickle, sizes that add up, finite values) and memory-mapped from a scratch
    folder that `close` removes."""

    def __init__(self, ctx: AppContext, data: bytes, fmt: str) -> None:
        # A request body's arrays: bounded like the request, never like a dataset upload.
        limits = convert_limits(ctx, 4 * ctx.settings.max_request_bytes)
        self.folder: Path | None = None
        self.arrays: dict[str, np.ndarray] = {}
        if fmt == "npy":  # little-endian C order, the usual form: read in place, same checks
            array = _npy_in_place(data, limits)
            if array is not None:
                self.arrays = {"x": array}
                return
        self.folder = ctx.store.temp_dir("body")
        raw = self.folder / "body"
        raw.write_bytes(data)
        try:
            infos = convert(raw, fmt, self.folder / "arrays", limits=limits)
        except FormatError as exc:
            self.close()
            raise _refusal(exc) from exc
        except BaseException:
            self.close()
            raise
        self.arrays = {i.name: np.load(self.folder / "arrays" / f"{i.name}.npy", mmap_mode="r")
                       for i in infos}  # fmt: skip

    @classmethod
    def in_place(cls, ctx: AppContext, data: bytes) -> BodyArrays | None:
        """The arrays of an `.npy` body read in place (little-endian C order), with the same
        checks and errors; None when it needs converting (scratch files: not here)."""
        array = _npy_in_place(data, convert_limits(ctx, 4 * ctx.settings.max_request_bytes))
        if array is None:
            return None
        arrays = cls.__new__(cls)
        arrays.folder, arrays.arrays = None, {"x": array}
        return arrays

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _npy_in_place(data: bytes, limits: ConvertLimits) -> np.ndarray | None:
    try:
        return npy_in_memory(data, "x", limits)
    except FormatError as exc:
        raise _refusal(exc) from exc


def _refusal(exc: FormatError) -> InvalidInput | PayloadTooLarge:
    error = PayloadTooLarge if exc.status == 413 else InvalidInput
    return error(exc.message, loc=exc.loc)
