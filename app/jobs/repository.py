"""All SQL of the jobs domain. Functions take a session and never commit: the caller's unit
of work does. Writes made on behalf of a job attempt are fenced by that attempt number."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import CursorResult, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import CheckpointRow, EpochLogRow, JobRow, JobStatus, ModelRow
from app.jobs.best import best

ACTIVE = (JobStatus.queued, JobStatus.running)


# -- models ------------------------------------------------------------------------------------
def add_model(session: Session, *, row: ModelRow) -> ModelRow:
    session.add(row)
    session.flush()
    return row


def get_model(session: Session, *, model_id: uuid.UUID) -> ModelRow | None:
    return session.get(ModelRow, model_id)


def get_model_for_update(session: Session, *, model_id: uuid.UUID) -> ModelRow | None:
    """The model row, locked until commit (Postgres; SQLite serialises writers anyway)."""
    return session.scalars(
        select(ModelRow).where(ModelRow.id == model_id).with_for_update()
    ).first()


def list_models(session: Session, *, limit: int, offset: int) -> tuple[Sequence[ModelRow], int]:
    rows = session.scalars(
        select(ModelRow)
        .order_by(ModelRow.created_at.desc(), ModelRow.id)
        .limit(limit)
        .offset(offset)
    ).all()
    total = session.scalar(select(func.count()).select_from(ModelRow)) or 0
    return rows, total


def delete_model(session: Session, *, model_id: uuid.UUID) -> None:
    job_ids = select(JobRow.id).where(JobRow.model_id == model_id)
    # Explicit deletes so SQLite without foreign-key cascades behaves like Postgres.
    session.execute(delete(EpochLogRow).where(EpochLogRow.job_id.in_(job_ids)))
    session.execute(delete(CheckpointRow).where(CheckpointRow.job_id.in_(job_ids)))
    session.execute(delete(JobRow).where(JobRow.model_id == model_id))
    session.execute(delete(ModelRow).where(ModelRow.id == model_id))


def job_ids_of_model(session: Session, *, model_id: uuid.UUID) -> list[uuid.UUID]:
    return list(session.scalars(select(JobRow.id).where(JobRow.model_id == model_id)))


def active_job_of_model(session: Session, *, model_id: uuid.UUID) -> JobRow | None:
    return session.scalars(
        select(JobRow).where(JobRow.model_id == model_id, JobRow.status.in_(ACTIVE)).limit(1)
    ).first()


def active_job_starting_from(session: Session, *, model_id: uuid.UUID, key: str) -> JobRow | None:
    """A queued or running job of the model whose fit starts from weights file `key`."""
    return session.scalars(
        select(JobRow)
        .where(JobRow.model_id == model_id, JobRow.status.in_(ACTIVE),
               JobRow.base_weights_key == key)
        .limit(1)
    ).first()  # fmt: skip


# -- jobs --------------------------------------------------------------------------------------
def add_job(session: Session, *, row: JobRow) -> JobRow:
    session.add(row)
    session.flush()
    return row


def get_job(session: Session, *, job_id: uuid.UUID) -> JobRow | None:
    return session.get(JobRow, job_id)


def list_jobs(
    session: Session, *, model_id: uuid.UUID | None, limit: int, offset: int
) -> Sequence[JobRow]:
    query = select(JobRow).order_by(JobRow.created_at.desc(), JobRow.id)
    if model_id is not None:
        query = query.where(JobRow.model_id == model_id)
    return session.scalars(query.limit(limit).offset(offset)).all()


def claim_job(session: Session, *, job_id: uuid.UUID, owner: str, lease_s: float) -> int | None:
    """Atomically take a job that is queued, or running with an expired lease, and has
    attempts left. Returns the new attempt number, or None if someone else has it."""
    now = utcnow()
    result = session.execute(
        update(JobRow)
        .where(
            JobRow.id == job_id,
            JobRow.attempt < JobRow.max_attempts,
            JobRow.cancel_requested.is_(False),
            or_(
                JobRow.status == JobStatus.queued,
                and_(JobRow.status == JobStatus.running, JobRow.lease_expires_at < now),
            ),
        )
        .values(
            status=JobStatus.running,
            attempt=JobRow.attempt + 1,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_s),
            started_at=func.coalesce(JobRow.started_at, now),
            updated_at=now,
        )
        .returning(JobRow.attempt)
    )
    return result.scalar_one_or_none()


def renew_lease(
    session: Session, *, job_id: uuid.UUID, attempt: int, lease_s: float
) -> bool | None:
    """Extend the lease of this attempt. Returns the cancel flag, or None if the attempt no
    longer owns the job (it was reclaimed, cancelled or finished)."""
    now = utcnow()
    result = session.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.attempt == attempt, JobRow.status == JobStatus.running)
        .values(lease_expires_at=now + timedelta(seconds=lease_s))
        .returning(JobRow.cancel_requested)
    )
    return result.scalar_one_or_none()


_OWNED = (
    JobRow.id == bindparam("b_job_id"),
    JobRow.attempt == bindparam("b_attempt"),
    JobRow.status == JobStatus.running,
)
# Writes of an attempt go through one of these: they match only while the attempt owns the job,
# and they lock the job row until commit.
_FENCE = (
    update(JobRow)
    .where(*_OWNED)
    .values(updated_at=bindparam("b_now"))
    .execution_options(synchronize_session=False)
)
_FENCED_PROGRESS = (
    update(JobRow)
    .where(*_OWNED)
    .values(epochs_done=bindparam("b_done"), updated_at=bindparam("b_now"))
    .execution_options(synchronize_session=False)
)


@lru_cache(maxsize=4)
def _epoch_upsert(dialect: str) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(EpochLogRow)
    return stmt.on_conflict_do_update(
        index_elements=[EpochLogRow.job_id, EpochLogRow.epoch],
        set_={"logs": stmt.excluded.logs, "attempt": stmt.excluded.attempt,
              "created_at": stmt.excluded.created_at},
    )  # fmt: skip


def record_epochs(
    session: Session,
    *,
    job_id: uuid.UUID,
    attempt: int,
    rows: Sequence[tuple[int, Mapping[str, float | None]]],
    first_of_attempt: bool = False,
) -> bool:
    """Upsert (job, epoch) rows, fenced by attempt: False, and nothing written, if this attempt
    is stale. `rows` are consecutive epochs in order.

    This runs once per epoch (or once per few, when epochs outpace commits), so its statements
    are built once and it is three round trips at most, whatever the number of rows. The first
    rows an attempt writes also drop later epochs an earlier attempt had logged: a resumed
    attempt redoes them."""
    if not rows:
        return True
    now = utcnow()
    last = rows[-1][0]
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        _FENCED_PROGRESS,
        {"b_job_id": job_id, "b_attempt": attempt, "b_done": last + 1, "b_now": now},
    )
    if not result.rowcount:
        return False
    session.execute(
        _epoch_upsert(session.get_bind().dialect.name),
        [{"job_id": job_id, "epoch": epoch, "logs": logs, "attempt": attempt, "created_at": now}
         for epoch, logs in rows],
    )  # fmt: skip
    if first_of_attempt:
        session.execute(
            delete(EpochLogRow).where(EpochLogRow.job_id == job_id, EpochLogRow.epoch > last),
            execution_options={"synchronize_session": False},
        )
    return True


def record_epoch(
    session: Session,
    *,
    job_id: uuid.UUID,
    attempt: int,
    epoch: int,
    logs: Mapping[str, float | None],
    first_of_attempt: bool = False,
) -> bool:
    """One epoch's row; see record_epochs."""
    return record_epochs(session, job_id=job_id, attempt=attempt, rows=[(epoch, logs)],
                         first_of_attempt=first_of_attempt)  # fmt: skip


def epoch_logs(
    session: Session, *, job_id: uuid.UUID, after: int = -1, limit: int | None = None
) -> Sequence[EpochLogRow]:
    query = (
        select(EpochLogRow)
        .where(EpochLogRow.job_id == job_id, EpochLogRow.epoch > after)
        .order_by(EpochLogRow.epoch)
    )
    if limit is not None:
        query = query.limit(limit)
    return session.scalars(query).all()


def last_attempt_logged(
    session: Session, *, job_id: uuid.UUID, upto: int
) -> tuple[int, int] | None:
    """The newest attempt among the job's rows up to epoch `upto`, and the last epoch up to
    there that it wrote; None without such rows."""
    attempt = session.scalar(
        select(func.max(EpochLogRow.attempt))
        .where(EpochLogRow.job_id == job_id, EpochLogRow.epoch <= upto)
    )  # fmt: skip
    if attempt is None:
        return None
    last = session.scalar(
        select(func.max(EpochLogRow.epoch)).where(
            EpochLogRow.job_id == job_id, EpochLogRow.epoch <= upto, EpochLogRow.attempt == attempt
        )
    )
    return attempt, -1 if last is None else last


def rewritten_epochs(
    session: Session, *, job_id: uuid.UUID, upto: int, attempt: int, after: int, limit: int
) -> Sequence[EpochLogRow]:
    """Rows up to epoch `upto` written by an attempt newer than `attempt`, or by `attempt`
    past epoch `after`: what a resumed attempt has rewritten since a reader saw them."""
    return session.scalars(
        select(EpochLogRow)
        .where(EpochLogRow.job_id == job_id, EpochLogRow.epoch <= upto, or_(
            EpochLogRow.attempt > attempt,
            and_(EpochLogRow.attempt == attempt, EpochLogRow.epoch > after),
        ))
        .order_by(EpochLogRow.epoch)
        .limit(limit)
    ).all()  # fmt: skip


def add_checkpoint(session: Session, *, row: CheckpointRow) -> bool:
    """Register a durable checkpoint file, fenced by the job attempt. The fence is an UPDATE of
    the job row, so it holds the row lock until commit: a claim cannot slip in between."""
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        _FENCE,
        {"b_job_id": row.job_id, "b_attempt": row.attempt, "b_now": utcnow()},
    )
    if not result.rowcount:
        return False
    session.add(row)
    session.flush()
    return True


def latest_checkpoint(session: Session, *, job_id: uuid.UUID) -> CheckpointRow | None:
    """The last checkpoint written at an epoch end (a mid-epoch save is no resume point)."""
    return session.scalars(
        select(CheckpointRow)
        .where(CheckpointRow.job_id == job_id, CheckpointRow.batch.is_(None))
        .order_by(CheckpointRow.epoch.desc(), CheckpointRow.created_at.desc())
        .limit(1)
    ).first()


def prune_periodic(session: Session, *, job_id: uuid.UUID, keep: int) -> list[str]:
    """Delete the rows of the job's periodic checkpoints but the `keep` newest and the one that
    `best` names; their file keys, for deletion once this commits. ModelCheckpoint saves and
    final checkpoints stay."""
    rows = session.scalars(
        select(CheckpointRow)
        .where(CheckpointRow.job_id == job_id)
        .order_by(CheckpointRow.epoch, CheckpointRow.created_at)
    ).all()
    spared = best(rows)
    periodic = [row for row in reversed(rows) if row.trigger == "periodic"]
    doomed = [row for row in periodic[keep:] if row is not spared]
    for row in doomed:
        session.delete(row)
    session.flush()
    return [row.key for row in doomed]


def get_checkpoint(session: Session, *, checkpoint_id: uuid.UUID) -> CheckpointRow | None:
    return session.get(CheckpointRow, checkpoint_id)


def list_checkpoints(session: Session, *, job_id: uuid.UUID) -> Sequence[CheckpointRow]:
    return session.scalars(
        select(CheckpointRow).where(CheckpointRow.job_id == job_id).order_by(CheckpointRow.epoch)
    ).all()


def finish_job(
    session: Session,
    *,
    job_id: uuid.UUID,
    attempt: int,
    status: JobStatus,
    error_type: str | None = None,
    error_message: str | None = None,
) -> bool:
    now = utcnow()
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.attempt == attempt, JobRow.status == JobStatus.running)
        .values(status=status, error_type=error_type, error_message=error_message,
                finished_at=now, updated_at=now, lease_owner=None, lease_expires_at=None)
    )  # fmt: skip
    return bool(result.rowcount)


def set_model_weights(
    session: Session,
    *,
    model_id: uuid.UUID,
    checkpoint_id: uuid.UUID,
    key: str,
    compile_config: dict[str, Any],
) -> None:
    session.execute(
        update(ModelRow)
        .where(ModelRow.id == model_id)
        .values(weights_checkpoint_id=checkpoint_id, weights_key=key,
                compile_config=compile_config, updated_at=utcnow())
    )  # fmt: skip


def set_uploaded_weights(session: Session, *, model_id: uuid.UUID, key: str) -> None:
    session.execute(
        update(ModelRow)
        .where(ModelRow.id == model_id)
        .values(weights_checkpoint_id=None, weights_key=key, updated_at=utcnow())
    )


def set_compile_config(
    session: Session, *, model_id: uuid.UUID, compile_config: dict[str, Any], key: str | None
) -> None:
    """A new compile spec, and the weights file `key` (the same weights, without the optimizer
    state of the spec before); where the weights come from does not change."""
    session.execute(
        update(ModelRow)
        .where(ModelRow.id == model_id)
        .values(compile_config=compile_config, weights_key=key, updated_at=utcnow())
    )


def set_on_batch_weights(
    session: Session, *, model_id: uuid.UUID, key: str, compile_config: dict[str, Any]
) -> None:
    """Weights (and optimizer state) written by train_on_batch, under the spec it ran."""
    session.execute(
        update(ModelRow)
        .where(ModelRow.id == model_id)
        .values(weights_checkpoint_id=None, weights_key=key, compile_config=compile_config,
                updated_at=utcnow())
    )  # fmt: skip


def request_cancel(session: Session, *, job_id: uuid.UUID) -> JobRow | None:
    """Queued jobs are cancelled at once; running ones get the flag their worker checks."""
    now = utcnow()
    session.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.status == JobStatus.queued)
        .values(status=JobStatus.cancelled, cancel_requested=True, finished_at=now, updated_at=now)
    )
    session.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.status == JobStatus.running)
        .values(cancel_requested=True, updated_at=now)
    )
    return get_job(session, job_id=job_id)


def finish_cancelled_or_exhausted(session: Session, *, now: datetime) -> None:
    """Running jobs whose lease expired and cannot be claimed again end now: cancelled ones as
    cancelled, ones out of attempts as failed."""
    expired = and_(JobRow.status == JobStatus.running, JobRow.lease_expires_at < now)
    session.execute(
        update(JobRow)
        .where(expired, JobRow.cancel_requested.is_(True))
        .values(status=JobStatus.cancelled, finished_at=now, updated_at=now, lease_owner=None)
    )
    session.execute(
        update(JobRow)
        .where(expired, JobRow.attempt >= JobRow.max_attempts)
        .values(status=JobStatus.failed, finished_at=now, updated_at=now, lease_owner=None,
                error_type="WorkerLost",
                error_message="the worker stopped renewing its lease and no attempts are left")
    )  # fmt: skip


def jobs_to_redispatch(
    session: Session, *, now: datetime, unclaimed_after_s: float
) -> list[uuid.UUID]:
    """Queued jobs nobody claimed for a while, and running jobs whose lease expired."""
    stale = now - timedelta(seconds=unclaimed_after_s)
    ids = session.scalars(
        select(JobRow.id).where(
            or_(
                and_(JobRow.status == JobStatus.queued, JobRow.dispatched_at < stale),
                and_(
                    JobRow.status == JobStatus.running,
                    JobRow.lease_expires_at < now,
                    JobRow.attempt < JobRow.max_attempts,
                    JobRow.cancel_requested.is_(False),
                ),
            )
        )
    ).all()
    if ids:
        session.execute(update(JobRow).where(JobRow.id.in_(ids)).values(dispatched_at=now))
    return list(ids)
