"""What a worker runs for a fit job; the Celery task and the in-process executor both call
`run_fit_job`. The job row is the truth: claim it atomically, train with a heartbeat, commit the
final checkpoint, the model's new weights and the final status in one fenced unit of work."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import replace

import numpy as np
from sqlalchemy.orm import Session

from app.auth import quotas
from app.core.logging import bind
from app.datasets.refs import DatasetMissing, open_refs
from app.db.models import CheckpointRow, JobRow, JobStatus, ModelRow
from app.db.scope import SYSTEM
from app.db.session import unit_of_work
from app.engine import callbacks as engine_callbacks
from app.engine.arrays.checks import XY
from app.engine.callbacks import ModelCheckpoint
from app.engine.config.errors import EngineError, TrainingInterrupted
from app.engine.training.adapt import adapt_before_fit
from app.engine.training.checkpoint import Checkpoint, CheckpointInfo
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitPlan
from app.engine.training.inference import resolve_device
from app.engine.training.state import LoopState
from app.engine.training.trainer import Trainer
from app.jobs import failures
from app.jobs import repository as repo
from app.jobs.callbacks import (
    AttemptContext,
    CancellationCheck,
    CheckpointSaver,
    EpochLogSink,
    ProgressPublisher,
    unsaved_copy,
    write_checkpoint,
)
from app.jobs.dispatch import dispatch, dispatch_if_none_pending
from app.jobs.failures import CheckpointMissing, is_transient, retried
from app.jobs.heartbeat import CANCELLED, LOST, STOPPING, Heartbeat
from app.jobs.inference_runner import run_inference
from app.jobs.inputs import read_inputs
from app.jobs.spec import FitJobSpec
from app.models import repository as models_repo
from app.models.loading import build_model, load_checkpoint
from app.models.weights_files import discard, replaced_file
from app.runtime.context import AppContext

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def run_fit_job(ctx: AppContext, job_id: uuid.UUID) -> None:
    attempt = retried(lambda: _claim(ctx, job_id), what=f"claiming job {job_id}")
    if attempt is None:
        return
    bind(attempt=attempt, worker=worker_name())  # on every log record from here on
    heartbeat = Heartbeat(ctx, job_id, attempt)
    heartbeat.start()
    job = None
    try:
        job = retried(lambda: _job(ctx, job_id), what=f"reading job {job_id}")
        if job.kind != "fit":
            run_inference(ctx, job, attempt, heartbeat)
        else:
            _train(ctx, job_id, attempt, heartbeat)
    except TrainingInterrupted as exc:
        _interrupted(ctx, job_id, attempt, exc.reason)
    except (EngineError, DatasetMissing, CheckpointMissing) as exc:  # the user's inputs
        _finish(ctx, job_id, attempt, JobStatus.failed, type(exc).__name__, str(exc))
    except FileNotFoundError:
        log.exception("job %s attempt %s: a file of the job is missing", job_id, attempt)
        _finish(ctx, job_id, attempt, JobStatus.failed, "ArtifactMissing",
                "a file of the job is missing from the artifact store (the API and every worker "
                "must share one ARTIFACT_DIR)")  # fmt: skip
    except Exception as exc:
        if is_transient(exc):
            log.warning("job %s attempt %s: %s persisted", job_id, attempt, type(exc).__name__,
                        exc_info=True)  # fmt: skip
            _end_attempt(ctx, job_id, attempt, failures.describe(exc))
        else:
            log.exception("job %s attempt %s failed", job_id, attempt)
            _finish(ctx, job_id, attempt, JobStatus.failed, failures.INTERNAL,
                    "an internal error ended the job; the server's log has the details under "
                    "this job's id")  # fmt: skip
    finally:
        heartbeat.stop()
        if job is not None:
            _wake_waiting(ctx, job.project_id)


def _claim(ctx: AppContext, job_id: uuid.UUID) -> int | None:
    with unit_of_work(ctx.sessions) as session:
        if not _may_start(ctx, session, job_id):
            # Its message is used up: the reaper's next pass, or the end of one of the
            # project's jobs, sends another.
            repo.mark_undispatched(session, job_id=job_id)
            log.info("job %s waits: its project runs as many jobs as its quota allows", job_id)
            return None
        attempt = repo.claim_job(
            session, job_id=job_id, owner=worker_name(), lease_s=ctx.settings.job_lease_s
        )
    if attempt is None:
        log.info("job %s: nothing to claim (duplicate delivery, finished or owned)", job_id)
    else:
        log.info("job %s: attempt %s claimed by %s", job_id, attempt, worker_name())
    return attempt


def _job(ctx: AppContext, job_id: uuid.UUID) -> JobRow:
    with unit_of_work(ctx.sessions) as session:
        job = repo.get_job(session, job_id=job_id, scope=SYSTEM)
    if job is None:
        raise TrainingInterrupted(LOST)  # deleted with its model meanwhile
    return job


def _interrupted(ctx: AppContext, job_id: uuid.UUID, attempt: int, reason: str) -> None:
    acknowledged = reason == LOST and retried(
        lambda: _cancel_acknowledged(ctx, job_id, attempt), what=f"reading job {job_id}"
    )
    if reason == CANCELLED or acknowledged:
        _finish(ctx, job_id, attempt, JobStatus.cancelled)
    elif reason == STOPPING:
        _give_back(ctx, job_id, attempt)
    else:
        log.warning("job %s attempt %s lost its lease; stopping", job_id, attempt)


def _cancel_acknowledged(ctx: AppContext, job_id: uuid.UUID, attempt: int) -> bool:
    with unit_of_work(ctx.sessions) as session:
        return repo.cancel_acknowledged(session, job_id=job_id, attempt=attempt)


def _give_back(ctx: AppContext, job_id: uuid.UUID, attempt: int) -> None:
    """The process shuts down: the attempt gives the job back (its attempt is not spent) and
    sends it a message at once, so another worker resumes it from its last checkpoint now,
    not when the lease would have expired."""

    def release() -> bool:
        with unit_of_work(ctx.sessions) as session:
            return repo.release_lease(session, job_id=job_id, attempt=attempt, spent=False)

    if retried(release, what=f"releasing job {job_id}"):
        log.info("job %s attempt %s stopped for a shutdown; dispatched again", job_id, attempt)
        dispatch(ctx, job_id)


def _end_attempt(ctx: AppContext, job_id: uuid.UUID, attempt: int, reason: str) -> None:
    """A transient fault persisted: the attempt ends; the job is dispatched again if it has
    attempts left, and fails as TransientError otherwise."""

    def end() -> str | None:
        with unit_of_work(ctx.sessions) as session:
            return repo.end_attempt(
                session, job_id=job_id, attempt=attempt, error_type=failures.TRANSIENT,
                error_message=reason,
            )  # fmt: skip

    try:
        outcome = retried(end, what=f"ending attempt {attempt} of job {job_id}", tries=6)
    except Exception:  # still failing: the lease expires and the reaper takes the job over
        log.exception("could not end attempt %s of job %s; the reaper will", attempt, job_id)
        return
    if outcome == "redispatch":
        log.info("job %s attempt %s ended (%s); dispatched again", job_id, attempt, reason)
        dispatch(ctx, job_id)


def _wake_waiting(ctx: AppContext, project_id: uuid.UUID) -> None:
    """A slot of the project's running_jobs quota is free: dispatch its oldest queued job now
    rather than when the reaper next looks (unless a message is pending for it already)."""
    try:
        with unit_of_work(ctx.sessions) as session:
            waiting = repo.oldest_queued(session, project_id=project_id)
        if waiting is not None:
            dispatch_if_none_pending(ctx, waiting)
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
    def finish() -> None:
        with unit_of_work(ctx.sessions) as session:
            repo.finish_job(session, job_id=job_id, attempt=attempt, status=status,
                            error_type=error_type, error_message=message)  # fmt: skip

    try:
        retried(finish, what=f"ending job {job_id}", tries=6)
    except Exception:  # still failing: the lease expires and the reaper takes the job over
        log.exception("could not end job %s as %s; the reaper will", job_id, status)


def _start_from_model(ctx: AppContext, trainer: Trainer, job: JobRow, spec: FitJobSpec) -> None:
    """The weights the model held when the fit was submitted; when the request gave no compile
    spec (a second `fit` on a compiled Keras model), also the optimizer state they were trained
    with under that same spec, which Keras's optimizer carries into the next fit."""
    assert job.base_weights_key is not None
    base = load_checkpoint(ctx.store, job.base_weights_key)
    if (
        spec.continue_optimizer
        and base.state.optimizer_meta is not None
        and base.info.compile_config == spec.compile
    ):
        trainer.carry_over(base.state)
    else:
        trainer.model.load_weight_tensors(base.state.weights)


def _rows(ctx: AppContext, job_id: uuid.UUID) -> tuple[JobRow, ModelRow, CheckpointRow | None]:
    with unit_of_work(ctx.sessions) as session:
        job = repo.get_job(session, job_id=job_id, scope=SYSTEM)
        model_row = None if job is None else models_repo.get_model(
            session, model_id=job.model_id, scope=SYSTEM
        )  # fmt: skip
        if job is None or model_row is None:
            raise TrainingInterrupted(LOST)  # deleted with its model meanwhile
        resume = repo.latest_checkpoint(session, job_id=job_id)
        if resume is None and job.start_checkpoint_id is not None:
            # A job resumed from another job's checkpoint starts from its full training state
            # (its own checkpoints, once it has some, take over: a later attempt uses those).
            resume = repo.get_checkpoint(session, checkpoint_id=job.start_checkpoint_id)
            if resume is None:
                raise CheckpointMissing(f"checkpoint {job.start_checkpoint_id}, which the job "
                                        "resumes from, no longer exists")  # fmt: skip
    return job, model_row, resume


def _train(ctx: AppContext, job_id: uuid.UUID, attempt: int, heartbeat: Heartbeat) -> None:
    job, model_row, resume = retried(lambda: _rows(ctx, job_id), what=f"reading job {job_id}")
    job_spec = FitJobSpec.from_request(job.request)
    spec = CompileSpec.parse(job_spec.compile, ("compile",))
    model = build_model(ctx.settings, model_row.config, model_row.seed)
    trainer = Trainer(model, spec, device=resolve_device(ctx.settings.device))
    args = replace(job_spec.fit)
    resumed_from: LoopState | None = None
    if resume is not None:
        # Continue from the last durable checkpoint of an earlier attempt.
        resumed_from = load_checkpoint(ctx.store, resume.key).state
        if resume.job_id != job_id:  # a parent's: if a callback stopped it there, this fit goes on
            resumed_from.stop_training = False
        args.initial_epoch = resume.epoch + 1
    elif job.base_weights_key is not None:
        _start_from_model(ctx, trainer, job, job_spec)
    arrays: dict[str, np.ndarray] = read_inputs(ctx.store, job.data_key)
    arrays.update(open_refs(ctx, job_spec.data_refs))
    callbacks = [
        engine_callbacks.get(c, ("callbacks", i)) for i, c in enumerate(job_spec.callbacks)
    ]
    info = CheckpointInfo(model_config=model_row.config, compile_config=job_spec.compile,
                          job_id=str(job_id))  # fmt: skip
    # After the job's own callbacks, so they see what those added to the logs; a save of the
    # job's ModelCheckpoint callbacks is written in CheckpointSaver's hook, after its epoch row.
    this = AttemptContext(ctx, job_id, attempt)
    epoch_log = EpochLogSink(this)
    saver = CheckpointSaver(
        this, info=info, epochs=args.epochs, flush_epochs=epoch_log.flush,
        model_checkpoints=[cb for cb in callbacks if isinstance(cb, ModelCheckpoint)],
    )  # fmt: skip
    progress = ProgressPublisher(this, epochs=args.epochs)
    attempt_callbacks = [epoch_log, saver, progress, CancellationCheck(heartbeat, epoch_log)]
    n_in, n_out = len(model.input_names), len(model.output_names)
    train = XY.from_arrays(arrays, n_in, n_out)
    validation = XY.from_arrays(arrays, n_in, n_out, "val_")
    assert train is not None
    plan = FitPlan(args, train, validation, [*callbacks, *attempt_callbacks])
    if job_spec.adapt and resume is None:  # a resumed attempt's checkpoint holds the adapted values
        adapt_before_fit(model, train, batch_size=plan.batch_size)
    try:
        # Also when the checkpoint is the last epoch's: the fit then runs no epoch but still
        # ends as the uninterrupted one did (EarlyStopping's best weights, the EMA overwrite).
        trainer.prepare_arrays(train)
        trainer.run_fit(plan, resume=resumed_from)
        epoch_log.flush()  # every epoch row is committed before the job can succeed
    except (TrainingInterrupted, EngineError):
        # Keep what was logged before a cancel, or before the epoch a fit failed at (a
        # schedule that ReduceLROnPlateau cannot lower): those rows are committed first.
        epoch_log.drain()
        raise
    finally:
        epoch_log.close()
    # A resumed attempt that had no epoch left ends from its checkpoint's state.
    end = saver.end_state if saver.end_state is not None else resumed_from
    state = trainer.loop_state().with_resume_point(end)
    final_logs = retried(lambda: last_logs(ctx, job_id), what=f"reading job {job_id}'s logs")
    final = Checkpoint(state, replace(info, logs=final_logs, final=True))
    key_epoch = max(trainer.epoch, args.initial_epoch - 1)
    ckpt = retried(lambda: write_checkpoint(
        ctx, job_id=job_id, attempt=attempt, epoch=key_epoch, ckpt=final,
        selection=saver.selection,
    ), what=f"writing job {job_id}'s final checkpoint")  # fmt: skip
    _commit_final(ctx, job, attempt, ckpt)


class _CancelledAtTheEnd(Exception):
    """The job's cancel was acknowledged before its final commit: roll that commit back."""


def _commit_final(ctx: AppContext, job: JobRow, attempt: int, ckpt: CheckpointRow) -> None:
    """The final checkpoint, the model's new weights and the status commit together: a resumed
    attempt never finds a final checkpoint of a job that is not finished. A cancel acknowledged
    before this commit wins: the job ends cancelled and the model keeps its weights. The
    model's own weights file the fit replaced goes once this has committed (see weights_files).
    Retried in place on a transient fault: each try is a fresh transaction, and one whose
    commit did land finds the job no longer running and writes nothing."""

    def commit() -> str | None:
        row = unsaved_copy(ckpt)
        with unit_of_work(ctx.sessions) as session:
            if not repo.add_checkpoint(session, row=row):
                return None
            if not repo.finish_job(session, job_id=job.id, attempt=attempt,
                                   status=JobStatus.succeeded):  # fmt: skip
                raise _CancelledAtTheEnd()
            before = models_repo.get_model_for_update(session, model_id=job.model_id,
                                                      scope=SYSTEM)  # fmt: skip
            old = None if before is None else before.weights_key
            replaced = replaced_file(session, model_id=job.model_id, new=row.key, old=old)
            models_repo.set_model_weights(
                session, model_id=job.model_id, checkpoint_id=row.id, key=row.key,
                compile_config=FitJobSpec.from_request(job.request).compile,
            )  # fmt: skip
        return replaced

    try:
        replaced = retried(commit, what=f"committing job {job.id}'s end")
    except _CancelledAtTheEnd:
        ctx.store.delete_prefix(ckpt.key)
        raise TrainingInterrupted(CANCELLED) from None
    discard(ctx, replaced)


def last_logs(ctx: AppContext, job_id: uuid.UUID) -> dict[str, float | None]:
    with unit_of_work(ctx.sessions) as session:
        rows = repo.epoch_logs(session, job_id=job_id, after=-1)
        return dict(rows[-1].logs) if rows else {}
