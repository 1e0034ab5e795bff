"""What a worker runs for a fit job; the Celery task and the in-process executor both call
`run_fit_job`. The job row is the truth: claim it atomically, train with a heartbeat, commit the
final checkpoint, the model's new weights and the final status in one fenced unit of work."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

import numpy as np
from sqlalchemy.orm import Session

from app.auth import quotas
from app.core.logging import bind
from app.datasets.refs import DatasetMissing, open_refs
from app.db.models import JobRow, JobStatus
from app.db.scope import SYSTEM
from app.db.session import unit_of_work
from app.engine import callbacks as engine_callbacks
from app.engine import training_state
from app.engine.adapt import adapt_before_fit
from app.engine.compile import CompileSpec
from app.engine.data import XY
from app.engine.errors import EngineError, TrainingInterrupted
from app.engine.fit_args import FitArgs, FitPlan
from app.engine.inference import resolve_device
from app.engine.trainer import Trainer
from app.jobs import repository as repo
from app.jobs.inference_runner import run_inference
from app.jobs.inputs import read_inputs
from app.jobs.recorder import CANCELLED, Heartbeat, Recorder, write_checkpoint
from app.models import repository as models_repo
from app.models.loading import build_model, model_tensors, read_checkpoint
from app.models.weights_files import discard, replaced_file
from app.runtime.context import AppContext

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def run_fit_job(ctx: AppContext, job_id: uuid.UUID) -> None:
    with unit_of_work(ctx.sessions) as session:
        if not _may_start(ctx, session, job_id):
            log.info("job %s waits: its project runs as many jobs as its quota allows; the "
                     "reaper dispatches it again", job_id)  # fmt: skip
            return
        attempt = repo.claim_job(
            session, job_id=job_id, owner=worker_name(), lease_s=ctx.settings.job_lease_s
        )
    if attempt is None:
        log.info("job %s: nothing to claim (duplicate delivery, finished or owned)", job_id)
        return
    bind(attempt=attempt, worker=worker_name())  # on every log record from here on
    heartbeat = Heartbeat(ctx, job_id, attempt)
    heartbeat.start()
    job = None
    try:
        with unit_of_work(ctx.sessions) as session:
            job = repo.get_job(session, job_id=job_id, scope=SYSTEM)
        if job is not None and job.kind != "fit":
            run_inference(ctx, job, attempt, heartbeat)
        else:
            _train(ctx, job_id, attempt, heartbeat)
    except TrainingInterrupted as exc:
        if exc.reason == CANCELLED:
            _finish(ctx, job_id, attempt, JobStatus.cancelled)
        else:
            log.warning("job %s attempt %s lost its lease; stopping", job_id, attempt)
    except (EngineError, DatasetMissing) as exc:
        _finish(ctx, job_id, attempt, JobStatus.failed, type(exc).__name__, str(exc))
    except Exception as exc:
        log.exception("job %s attempt %s failed", job_id, attempt)
        _finish(ctx, job_id, attempt, JobStatus.failed, type(exc).__name__, str(exc))
    finally:
        heartbeat.stop()
        if job is not None:
            _wake_waiting(ctx, job.project_id)


def _wake_waiting(ctx: AppContext, project_id: uuid.UUID) -> None:
    """A slot of the project's running_jobs quota is free: dispatch its oldest queued job now
    rather than when the reaper next looks (a duplicate message is harmless: claims are
    atomic)."""
    if ctx.dispatcher is None:
        return
    try:
        with unit_of_work(ctx.sessions) as session:
            waiting = repo.oldest_queued(session, project_id=project_id)
        if waiting is not None:
            ctx.dispatcher.dispatch(waiting)
    except Exception:
        log.exception("could not dispatch the next job of project %s; the reaper will", project_id)


def _may_start(ctx: AppContext, session: Session, job_id: uuid.UUID) -> bool:
    """A queued job starts only while its project runs fewer jobs than its running_jobs quota
    (checked under the project's lock, so two workers cannot both take the last slot). A
    running job whose lease expired is taken over: it counts already."""
    job = repo.get_job(session, job_id=job_id, scope=SYSTEM)
    if job is None or job.status != JobStatus.queued:
        return True
    return quotas.may_run_another(session, settings=ctx.settings, project_id=job.project_id)


def _finish(
    ctx: AppContext,
    job_id: uuid.UUID,
    attempt: int,
    status: JobStatus,
    error_type: str | None = None,
    message: str | None = None,
) -> None:
    with unit_of_work(ctx.sessions) as session:
        repo.finish_job(session, job_id=job_id, attempt=attempt, status=status,
                        error_type=error_type, error_message=message)  # fmt: skip


def _start_from_model(ctx: AppContext, trainer: Trainer, job: JobRow) -> None:
    """The weights the model held when the fit was submitted; when the request gave no compile
    spec (a second `fit` on a compiled Keras model), also the optimizer state they were trained
    with under that same spec, which Keras's optimizer carries into the next fit."""
    assert job.base_weights_key is not None
    tensors, meta = read_checkpoint(ctx.store, job.base_weights_key)
    if (
        job.request.get("continue_optimizer")
        and meta.get("optimizer") is not None
        and meta.get("compile_config") == job.request["compile"]
    ):
        trainer.load_optimizer_state(tensors, meta)
    else:
        trainer.model.load_weight_tensors(model_tensors(tensors))


def _train(ctx: AppContext, job_id: uuid.UUID, attempt: int, heartbeat: Heartbeat) -> None:
    with unit_of_work(ctx.sessions) as session:
        job = repo.get_job(session, job_id=job_id, scope=SYSTEM)
        assert job is not None
        model_row = models_repo.get_model(session, model_id=job.model_id, scope=SYSTEM)
        assert model_row is not None
        resume = repo.latest_checkpoint(session, job_id=job_id)
        if resume is None and job.start_checkpoint_id is not None:
            # A job resumed from another job's checkpoint starts from its full training state
            # (its own checkpoints, once it has some, take over: a later attempt uses those).
            resume = repo.get_checkpoint(session, checkpoint_id=job.start_checkpoint_id)
            if resume is None:
                raise LookupError(f"checkpoint {job.start_checkpoint_id} no longer exists")
    spec = CompileSpec.parse(job.request["compile"], ("compile",))
    model = build_model(ctx.settings, model_row.config, model_row.seed)
    trainer = Trainer(model, spec, device=resolve_device(ctx.settings.device))
    fit = dict(job.request["fit"])
    adapt = bool(fit.pop("adapt", False))  # a step before Keras's fit, not one of its arguments
    args = FitArgs(**fit)
    resumed_from = None
    if resume is not None:
        # Continue from the last durable checkpoint of an earlier attempt.
        tensors, meta = read_checkpoint(ctx.store, resume.key)
        resumed_from = (tensors, meta)
        if resume.job_id != job_id:  # a parent's: if a callback stopped it there, this fit goes on
            meta["stop_training"] = False
        trainer.load_state(tensors, meta)
        args.initial_epoch = resume.epoch + 1
    elif job.base_weights_key is not None:
        _start_from_model(ctx, trainer, job)
    arrays: dict[str, np.ndarray] = read_inputs(ctx.store, job.data_key)
    arrays.update(open_refs(ctx, job.request.get("data_refs", {})))
    callbacks = [
        engine_callbacks.get(c, ("callbacks", i)) for i, c in enumerate(job.request["callbacks"])
    ]
    static_meta = {"model_config": model_row.config, "seed": model_row.seed,
                   "compile_config": job.request["compile"], "job_id": str(job_id)}  # fmt: skip
    recorder = Recorder(ctx, job_id, attempt, heartbeat, static_meta)
    recorder.watch(callbacks, epochs=args.epochs)
    n_in, n_out = len(model.input_names), len(model.output_names)
    train = XY.from_arrays(arrays, n_in, n_out)
    validation = XY.from_arrays(arrays, n_in, n_out, "val_")
    assert train is not None
    args = args.resolved(train.size)  # the service stores it resolved; older requests may not
    assert args.batch_size is not None
    if adapt and resume is None:  # a resumed attempt's checkpoint holds the adapted values
        adapt_before_fit(model, train, batch_size=args.batch_size)
    try:
        # Also when the checkpoint is the last epoch's: the fit then runs no epoch but still
        # ends as the uninterrupted one did (EarlyStopping's best weights, the EMA overwrite).
        trainer.prepare_arrays(train)
        plan = FitPlan(args, train, validation, [*callbacks, recorder])
        trainer.run_fit(plan)
        recorder.writer.flush()  # every epoch row is committed before the job can succeed
    except (TrainingInterrupted, EngineError):
        # Keep what was logged before a cancel, or before the epoch a fit failed at (a
        # schedule that ReduceLROnPlateau cannot lower): those rows are committed first.
        recorder.writer.queue.join()
        raise
    finally:
        recorder.writer.close()
    # A resumed attempt that had no epoch left ends from its checkpoint's state.
    end = recorder.end_state if recorder.end_state is not None else resumed_from
    tensors, meta = training_state.with_resume_point(*trainer.state(), end)
    final_logs = recorder_logs(ctx, job_id)
    key_epoch = max(trainer.epoch, args.initial_epoch - 1)
    ckpt = write_checkpoint(
        ctx, job_id=job_id, attempt=attempt, epoch=key_epoch, logs=final_logs,
        tensors=tensors, meta={**static_meta, **meta, "final": True},
        selection=recorder.selection,
    )  # fmt: skip
    # The final checkpoint, the model's new weights and the status commit together: a resumed
    # attempt never finds a final checkpoint of a job that is not finished. The model's own
    # weights file the fit replaced goes once that has committed (see weights_files).
    with unit_of_work(ctx.sessions) as session:
        if not repo.add_checkpoint(session, row=ckpt):
            return
        repo.finish_job(session, job_id=job_id, attempt=attempt, status=JobStatus.succeeded)
        before = models_repo.get_model_for_update(session, model_id=job.model_id, scope=SYSTEM)
        replaced = replaced_file(session, model_id=job.model_id, new=ckpt.key,
                                 old=None if before is None else before.weights_key)  # fmt: skip
        models_repo.set_model_weights(
            session, model_id=job.model_id, checkpoint_id=ckpt.id, key=ckpt.key,
            compile_config=job.request["compile"],
        )  # fmt: skip
    discard(ctx, replaced)


def recorder_logs(ctx: AppContext, job_id: uuid.UUID) -> dict[str, float | None]:
    with unit_of_work(ctx.sessions) as session:
        rows = repo.epoch_logs(session, job_id=job_id, after=-1)
        return dict(rows[-1].logs) if rows else {}
