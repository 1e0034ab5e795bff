"""Use cases of the models and jobs domain. Each opens one unit of work that commits once;
a job is dispatched only after its row is committed. Engine errors become 422s that name the
field, and every check runs before anything is written."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.exc import IntegrityError

from app.core.errors import Conflict, InvalidInput, NotFound
from app.db.models import EpochLogRow, JobRow, JobStatus, ModelRow
from app.db.session import unit_of_work
from app.engine import callbacks as engine_callbacks
from app.engine.adapt import check_adapt_size
from app.engine.compile import CompileSpec
from app.engine.errors import EngineError
from app.engine.fit_args import FitArgs
from app.engine.inference import resolve_device
from app.engine.models import Model
from app.engine.trainer import Trainer
from app.jobs import repository as repo
from app.jobs.jsonsafe import check_storable
from app.jobs.loading import build_model, model_limits, write_inputs
from app.jobs.schemas import FitRequest, ModelCreate
from app.jobs.weights_files import load_or_changed, model_lock, model_prefix
from app.runtime.context import AppContext
from app.runtime.storage import job_data_key, job_prefix

log = logging.getLogger(__name__)
BODY = "body"


def invalid(exc: EngineError, *prefix: str | int) -> InvalidInput:
    return InvalidInput(exc.message, loc=[*prefix, *exc.loc])


# -- models ------------------------------------------------------------------------------------
def create_model(ctx: AppContext, *, body: ModelCreate) -> ModelRow:
    seed = body.seed if body.seed is not None else int.from_bytes(os.urandom(4), "little")
    check_storable(body.config, [BODY, "config"])
    check_storable(body.name, [BODY, "name"])
    try:  # a dry run: shapes, counts and limits, no weights allocated
        model = Model.dry_run(body.config, limits=model_limits(ctx.settings))
    except EngineError as exc:
        raise invalid(exc, BODY, "config") from exc
    row = ModelRow(
        name=body.name or model.name, config=body.config, seed=seed, summary=model.summary()
    )
    with unit_of_work(ctx.sessions) as session:
        repo.add_model(session, row=row)
    return row


def list_models(ctx: AppContext, *, limit: int, offset: int) -> tuple[Sequence[ModelRow], int]:
    with unit_of_work(ctx.sessions) as session:
        return repo.list_models(session, limit=limit, offset=offset)


def get_model(ctx: AppContext, *, model_id: uuid.UUID) -> ModelRow:
    with unit_of_work(ctx.sessions) as session:
        row = repo.get_model(session, model_id=model_id)
    if row is None:
        raise NotFound(f"model {model_id} does not exist", loc=["path", "model_id"])
    return row


def delete_model(ctx: AppContext, *, model_id: uuid.UUID) -> None:
    with unit_of_work(ctx.sessions) as session:
        # Locked like submit_fit locks it: a fit and a delete of one model do not interleave.
        if repo.get_model_for_update(session, model_id=model_id) is None:
            raise NotFound(f"model {model_id} does not exist", loc=["path", "model_id"])
        active = repo.active_job_of_model(session, model_id=model_id)
        if active is not None:
            raise Conflict(
                f"model {model_id} has a {active.status} job {active.id}; cancel it first",
                loc=["path", "model_id"],
            )
        job_ids = repo.job_ids_of_model(session, model_id=model_id)
        repo.delete_model(session, model_id=model_id)
    # Files go only after the rows are gone: a crash here leaves orphan files, never rows
    # pointing at missing files.
    for job_id in job_ids:
        ctx.store.delete_prefix(job_prefix(job_id))
    ctx.store.delete_prefix(model_prefix(model_id))
    ctx.cache.drop_model(model_id)


def model_with_weights(ctx: AppContext, row: ModelRow) -> Model:
    return model_at(ctx, row, row.weights_key)


def model_at(ctx: AppContext, row: ModelRow, key: str | None) -> Model:
    """The model of `row` with the weights of file `key` (None: its seeded weights), from the
    cache when it is there. Cached models are shared: read them, never train them. Raises
    WeightsChanged when the file was replaced since `row` was read (see weights_files)."""
    model = ctx.cache.get((row.id, key))
    if model is None:
        model = build_model(ctx.settings, row.config, row.seed)
        model = load_or_changed(ctx.store, model, key, model_id=row.id)
        model.to(resolve_device(ctx.settings.device))
        ctx.cache.put((row.id, key), model)
    return model


def compile_spec(row: ModelRow, given: dict[str, Any] | None) -> CompileSpec:
    config = given if given is not None else row.compile_config
    if config is None:
        raise InvalidInput(
            "the model has not been compiled: give a compile spec (optimizer, loss, metrics)",
            loc=[BODY, "compile"],
        )
    try:
        return CompileSpec.parse(config, ("compile",))
    except EngineError as exc:
        raise invalid(exc, BODY) from exc


# -- fit ---------------------------------------------------------------------------------------
def submit_fit(ctx: AppContext, *, model_id: uuid.UUID, body: FitRequest) -> JobRow:
    row = get_model(ctx, model_id=model_id)
    check_storable(body.compile, [BODY, "compile"])
    check_storable(body.callbacks, [BODY, "callbacks"])
    spec = compile_spec(row, body.compile)
    seed = body.seed if body.seed is not None else int.from_bytes(os.urandom(4), "little")
    args = FitArgs(
        batch_size=body.batch_size,
        epochs=body.epochs,
        shuffle=body.shuffle,
        validation_split=body.validation_split,
        initial_epoch=body.initial_epoch,
        validation_batch_size=body.validation_batch_size,
        validation_freq=body.validation_freq,
        seed=seed,
        class_weight=body.class_weight,
        steps_per_epoch=body.steps_per_epoch,
        validation_steps=body.validation_steps,
    )
    vd = body.validation_data
    try:
        trainer = Trainer(
            build_model(ctx.settings, row.config, row.seed), spec, device=resolve_device("cpu")
        )
        cbs = [engine_callbacks.get(c, ("callbacks", i)) for i, c in enumerate(body.callbacks)]
        plan = trainer.plan_fit(
            body.x, body.y, args=args, sample_weight=body.sample_weight,
            validation_data=None if vd is None else (vd.x, vd.y, vd.sample_weight),
            callbacks=cbs,
        )  # fmt: skip
        if body.adapt:
            check_adapt_size(trainer.model, plan.train.size, ("adapt",))
    except EngineError as exc:
        raise invalid(exc, BODY) from exc
    job_id = uuid.uuid4()
    arrays: dict[str, np.ndarray | None] = dict(plan.train.to_arrays())
    if plan.validation is not None:
        arrays.update(plan.validation.to_arrays("val_"))
    # The split and the class weights are already applied to the stored arrays, and the batch
    # size is resolved (plan.args).
    fit = {**plan.args.__dict__, "validation_split": 0.0, "adapt": body.adapt}
    # Without a compile spec the fit continues the model's optimizer, as a second Keras fit
    # does; with one it starts a fresh optimizer, as compile() then fit() does.
    request = {"compile": spec.to_config(), "fit": fit, "callbacks": body.callbacks,
               "continue_optimizer": body.compile is None}  # fmt: skip
    data_key = job_data_key(job_id)
    # The inputs are durable before the row that points at them is committed.
    write_inputs(ctx.store, data_key, arrays)
    busy = Conflict(f"model {model_id} is already training", loc=["path", "model_id"])
    try:
        # Locked and read again: the job starts from the weights the model holds now, which a
        # change of its weights cannot delete while the job is active (see weights_files).
        with model_lock(model_id), unit_of_work(ctx.sessions) as session:
            current = repo.get_model_for_update(session, model_id=model_id)
            if current is None:
                raise NotFound(f"model {model_id} does not exist", loc=["path", "model_id"])
            if repo.active_job_of_model(session, model_id=model_id) is not None:
                raise busy
            if body.compile is None and current.compile_config != row.compile_config:
                raise Conflict(f"the compile spec of model {model_id} changed while this fit "
                               "was being checked; try again", loc=[BODY, "compile"])  # fmt: skip
            job = repo.add_job(session, row=JobRow(
                id=job_id, model_id=model_id, request=request, data_key=data_key,
                base_weights_key=current.weights_key, epochs=args.epochs,
                epochs_done=args.initial_epoch, max_attempts=ctx.settings.job_max_attempts,
            ))  # fmt: skip
    except IntegrityError as exc:  # the one-active-job-per-model index caught a race
        ctx.store.delete_prefix(job_prefix(job_id))
        raise busy from exc
    except BaseException:
        ctx.store.delete_prefix(job_prefix(job_id))
        raise
    dispatch(ctx, job.id)
    return job


def dispatch(ctx: AppContext, job_id: uuid.UUID) -> None:
    """Ring the doorbell. A failure leaves the job queued; the reaper dispatches it again."""
    if ctx.dispatcher is None:
        return
    try:
        ctx.dispatcher.dispatch(job_id)
    except Exception:
        log.exception("could not dispatch job %s; the reaper will retry", job_id)


# -- jobs --------------------------------------------------------------------------------------
def get_job(ctx: AppContext, *, job_id: uuid.UUID) -> tuple[JobRow, list[EpochLogRow]]:
    with unit_of_work(ctx.sessions) as session:
        job = repo.get_job(session, job_id=job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", loc=["path", "job_id"])
        rows = list(repo.epoch_logs(session, job_id=job_id))
    return job, rows


def list_jobs(
    ctx: AppContext, *, model_id: uuid.UUID | None, limit: int, offset: int
) -> list[tuple[JobRow, list[EpochLogRow]]]:
    with unit_of_work(ctx.sessions) as session:
        jobs = repo.list_jobs(session, model_id=model_id, limit=limit, offset=offset)
        return [(j, list(repo.epoch_logs(session, job_id=j.id))) for j in jobs]


def history(rows: Sequence[EpochLogRow]) -> dict[str, list[float | None]]:
    """Keras's History.history: each key's values over the epochs that logged it."""
    out: dict[str, list[float | None]] = {}
    for row in rows:
        for key, value in row.logs.items():
            out.setdefault(key, []).append(value)
    return out


def job_logs(ctx: AppContext, *, job_id: uuid.UUID, after: int) -> list[EpochLogRow]:
    with unit_of_work(ctx.sessions) as session:
        if repo.get_job(session, job_id=job_id) is None:
            raise NotFound(f"job {job_id} does not exist", loc=["path", "job_id"])
        return list(repo.epoch_logs(session, job_id=job_id, after=after))


def cancel_job(ctx: AppContext, *, job_id: uuid.UUID) -> JobRow:
    with unit_of_work(ctx.sessions) as session:
        job = repo.get_job(session, job_id=job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", loc=["path", "job_id"])
        if job.status in (JobStatus.succeeded, JobStatus.failed):
            raise Conflict(f"job {job_id} has already {job.status}", loc=["path", "job_id"])
        job = repo.request_cancel(session, job_id=job_id)
        assert job is not None
        return job
