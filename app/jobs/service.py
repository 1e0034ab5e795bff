"""Use cases of the jobs domain: submit a fit, read, list and cancel jobs, their epoch rows and
their checkpoints. Each opens one unit of work that commits once; a job is dispatched only after
its row is committed. Engine errors become 422s that name the field, and every check runs before
anything is written."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.quotas import require_room
from app.core.errors import AppError, Conflict, InvalidInput, NotFound
from app.datasets import repository as datasets_repo
from app.datasets.refs import Resolver
from app.db.models import CheckpointRow, EpochLogRow, JobRow, JobStatus
from app.db.scope import Scope
from app.db.session import unit_of_work
from app.engine import callbacks as engine_callbacks
from app.engine.config.errors import EngineError
from app.engine.training.adapt import check_adapt_size
from app.engine.training.inference import resolve_device
from app.engine.training.trainer import Trainer
from app.jobs import repository as repo
from app.jobs.dispatch import dispatch
from app.jobs.inputs import write_inputs
from app.jobs.schemas import FitRequest
from app.jobs.spec import FitJobSpec
from app.models import repository as models_repo
from app.models.cost import check_fit_plan, check_one_sample
from app.models.loading import build_model
from app.models.service import BODY, compile_spec, get_model, invalid
from app.models.weights_files import model_lock
from app.runtime.context import AppContext
from app.runtime.jsonsafe import check_storable
from app.runtime.storage import job_data_key, job_prefix

log = logging.getLogger(__name__)


# -- fit ---------------------------------------------------------------------------------------
def submit_fit(ctx: AppContext, *, scope: Scope, model_id: uuid.UUID, body: FitRequest) -> JobRow:
    row = get_model(ctx, scope=scope, model_id=model_id)
    # What the job reads and writes is its model's project's.
    project = Scope.of_project(row.project_id)
    check_storable(body.compile, [BODY, "compile"])
    check_storable(body.callbacks, [BODY, "callbacks"])
    spec = compile_spec(row, body.compile)
    args = body.fit_args()
    if args.seed is None:
        args = replace(args, seed=int.from_bytes(os.urandom(4), "little"))
    vd = body.validation_data
    # References to datasets become memory maps of their rows: checked like inline arrays, read
    # by nobody here.
    refs = Resolver(ctx, scope=project)
    x, y = refs.resolve(body.x, [BODY, "x"]), refs.resolve(body.y, [BODY, "y"])
    sample_weight = refs.resolve(body.sample_weight, [BODY, "sample_weight"])
    validation = None
    if vd is not None:
        vloc: list[str | int] = [BODY, "validation_data"]
        validation = (
            refs.resolve(vd.x, [*vloc, "x"]),
            refs.resolve(vd.y, [*vloc, "y"]),
            refs.resolve(vd.sample_weight, [*vloc, "sample_weight"]),
        )
    try:
        model = build_model(ctx.settings, row.config, row.seed)
        check_one_sample(ctx.settings, model, x, loc=["path", "model_id"])  # plan_fit's probe
        trainer = Trainer(model, spec, device=resolve_device("cpu"))
        cbs = [engine_callbacks.get(c, ("callbacks", i)) for i, c in enumerate(body.callbacks)]
        plan = trainer.plan_fit(
            x,
            y,
            args=args,
            sample_weight=sample_weight,
            validation_data=validation,
            callbacks=cbs,
        )
        if body.adapt:
            check_adapt_size(trainer.model, plan.train.size, ("adapt",))
    except EngineError as exc:
        raise invalid(exc, BODY) from exc
    check_fit_plan(ctx.settings, model, x, plan)
    job_id = uuid.uuid4()
    arrays: dict[str, np.ndarray | None] = dict(plan.train.to_arrays())
    if plan.validation is not None:
        arrays.update(plan.validation.to_arrays("val_"))
    data_key, data_refs, inputs_bytes = store_inputs(ctx, job_id, arrays, refs)
    # The split and the class weights are already applied to the stored arrays, and the batch
    # size is resolved (plan.args). Without a compile spec the fit continues the model's
    # optimizer, as a second Keras fit does; with one it starts a fresh optimizer, as compile()
    # then fit() does.
    job_spec = FitJobSpec(
        compile=spec.to_config(),
        fit=replace(plan.args, validation_split=0.0),
        adapt=body.adapt,
        callbacks=body.callbacks,
        continue_optimizer=body.compile is None,
        data_refs=data_refs,
    )
    busy = Conflict(f"model {model_id} is already training", loc=["path", "model_id"])
    # Locked and read again: the job starts from the weights the model holds now, which a
    # change of its weights cannot delete while the job is active (see weights_files).
    with (
        inputs_until_committed(ctx, job_id, busy),
        model_lock(model_id),
        unit_of_work(ctx.sessions) as session,
    ):
        current = models_repo.get_model_for_update(session, model_id=model_id, scope=project)
        if current is None:
            raise NotFound(f"model {model_id} does not exist", loc=["path", "model_id"])
        if models_repo.active_job_of_model(session, model_id=model_id) is not None:
            raise busy
        require_room(
            session,
            settings=ctx.settings,
            project_id=row.project_id,
            queued_jobs=1,
            stored_bytes=inputs_bytes,
        )
        if body.compile is None and current.compile_config != row.compile_config:
            raise Conflict(
                f"the compile spec of model {model_id} changed while this fit "
                "was being checked; try again",
                loc=[BODY, "compile"],
            )
        job = repo.add_job(
            session,
            row=JobRow(
                id=job_id,
                model_id=model_id,
                project_id=row.project_id,
                request=job_spec.to_request(),
                data_key=data_key,
                inputs_bytes=inputs_bytes,
                base_weights_key=current.weights_key,
                epochs=args.epochs,
                epochs_done=args.initial_epoch,
                max_attempts=ctx.settings.job_max_attempts,
            ),
        )
        link_datasets(session, scope=project, job_id=job_id, data_refs=data_refs)
    dispatch(ctx, job.id)
    return job


@contextmanager
def inputs_until_committed(ctx: AppContext, job_id: uuid.UUID, busy: Conflict) -> Iterator[None]:
    """The job's input files go again unless its row commits; a race that the
    one-active-job-per-model index caught is `busy`."""
    try:
        yield
    except IntegrityError as exc:
        ctx.store.delete_prefix(job_prefix(job_id))
        raise busy from exc
    except BaseException:
        ctx.store.delete_prefix(job_prefix(job_id))
        raise


def store_inputs(
    ctx: AppContext, job_id: uuid.UUID, arrays: dict[str, np.ndarray | None], refs: Resolver
) -> tuple[str, dict[str, dict[str, Any]], int]:
    """Write a job's arrays (slot -> array) to its inputs file, durable before the job's row is
    committed; an array that is still rows of a dataset (a split takes rows of it) is kept as
    that reference instead. Returns the file's key, the references by slot and the file's
    bytes."""
    data_refs: dict[str, dict[str, Any]] = {}
    inline: dict[str, np.ndarray | None] = {}
    for slot, arr in arrays.items():
        ref = refs.ref_of(arr)
        if ref is not None:
            data_refs[slot] = ref.to_json()
        else:
            inline[slot] = arr
    data_key = job_data_key(job_id)
    size = write_inputs(ctx.store, data_key, inline)
    return data_key, data_refs, size


def link_datasets(
    session: Session,
    *,
    scope: Scope,
    job_id: uuid.UUID,
    data_refs: dict[str, dict[str, Any]],
    gone: Callable[[uuid.UUID], AppError] | None = None,
) -> None:
    """Record the datasets a job reads (its stored references), locked so none is deleted
    before the job commits. One deleted since its reference was checked raises `gone(id)`, by
    default a 422."""
    read = {uuid.UUID(r["dataset"]): r["sha256"] for r in data_refs.values()}
    present = {r.id for r in datasets_repo.lock_datasets(session, dataset_ids=read, scope=scope)}
    for dataset_id in sorted(set(read) - present):
        if gone is not None:
            raise gone(dataset_id)
        raise InvalidInput(
            f"dataset {dataset_id} was deleted while the request was checked", loc=[BODY]
        )
    datasets_repo.link_job(session, job_id=job_id, datasets=read)


# -- jobs --------------------------------------------------------------------------------------
def get_job(
    ctx: AppContext, *, scope: Scope, job_id: uuid.UUID
) -> tuple[JobRow, list[EpochLogRow]]:
    with unit_of_work(ctx.sessions) as session:
        job = repo.get_job(session, job_id=job_id, scope=scope)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", loc=["path", "job_id"])
        rows = list(repo.epoch_logs(session, job_id=job_id))
    return job, rows


def list_jobs(
    ctx: AppContext, *, scope: Scope, model_id: uuid.UUID | None, limit: int, offset: int
) -> list[tuple[JobRow, list[EpochLogRow]]]:
    with unit_of_work(ctx.sessions) as session:
        jobs = repo.list_jobs(session, scope=scope, model_id=model_id, limit=limit, offset=offset)
        return [(j, list(repo.epoch_logs(session, job_id=j.id))) for j in jobs]


def history(rows: Sequence[EpochLogRow]) -> dict[str, list[float | None]]:
    """Keras's History.history: each key's values over the epochs that logged it."""
    out: dict[str, list[float | None]] = {}
    for row in rows:
        for key, value in row.logs.items():
            out.setdefault(key, []).append(value)
    return out


def job_logs(ctx: AppContext, *, scope: Scope, job_id: uuid.UUID, after: int) -> list[EpochLogRow]:
    with unit_of_work(ctx.sessions) as session:
        if repo.get_job(session, job_id=job_id, scope=scope) is None:
            raise NotFound(f"job {job_id} does not exist", loc=["path", "job_id"])
        return list(repo.epoch_logs(session, job_id=job_id, after=after))


def cancel_job(ctx: AppContext, *, scope: Scope, job_id: uuid.UUID) -> JobRow:
    with unit_of_work(ctx.sessions) as session:
        job = repo.get_job(session, job_id=job_id, scope=scope)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", loc=["path", "job_id"])
        if job.status in (JobStatus.succeeded, JobStatus.failed):
            raise Conflict(f"job {job_id} has already {job.status}", loc=["path", "job_id"])
        job = repo.request_cancel(session, job_id=job_id, scope=scope)
        assert job is not None
        return job


def list_checkpoints(
    ctx: AppContext, *, scope: Scope, job_id: uuid.UUID
) -> tuple[JobRow, Sequence[CheckpointRow]]:
    with unit_of_work(ctx.sessions) as session:
        job = repo.get_job(session, job_id=job_id, scope=scope)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", loc=["path", "job_id"])
        return job, repo.list_checkpoints(session, job_id=job_id)
