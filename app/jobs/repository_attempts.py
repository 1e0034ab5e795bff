"""The SQL of what a job attempt writes and what readers read of it: epoch rows and checkpoints.
Writes on behalf of an attempt are fenced by its attempt number; functions take a session and
never commit. `app.jobs.repository` re-exports these, so the jobs domain's callers use one
module (the models domain reads checkpoints through its own, app.models.repository)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import CursorResult, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import CheckpointRow, EpochLogRow, JobRow, JobStatus
from app.models.best import best
from app.webhooks import outbox

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
    ended_at: Sequence[datetime] | None = None,
) -> bool:
    """Upsert (job, epoch) rows, fenced by attempt: False, and nothing written, if this attempt
    is stale. `rows` are consecutive epochs in order; `ended_at` (one per row) is when each
    epoch ended, the rows' `created_at` (default: now).

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
        [{"job_id": job_id, "epoch": epoch, "logs": logs, "attempt": attempt, "created_at": at}
         for (epoch, logs), at in zip(rows, ended_at or [now] * len(rows), strict=True)],
    )  # fmt: skip
    if first_of_attempt:
        session.execute(
            delete(EpochLogRow).where(EpochLogRow.job_id == job_id, EpochLogRow.epoch > last),
            execution_options={"synchronize_session": False},
        )
    outbox.record_epochs(session, job_id=job_id, attempt=attempt, rows=rows)
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
