"""All SQL of the jobs domain: job rows (added, listed, claimed, leased, finished, cancelled,
reaped) and, through repository_attempts, an attempt's epoch rows and checkpoints. Model rows
are the models domain's (app.models.repository). Functions take a session and never commit: the
caller's unit of work does. Writes made on behalf of a job attempt are fenced by that attempt
number."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import CursorResult, and_, func, or_, select, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import JobRow, JobStatus
from app.db.scope import Scope
from app.jobs import repository_attempts as _attempts
from app.jobs import repository_dispatch as _dispatch
from app.webhooks import outbox

# What a job attempt writes and readers read of it (epoch rows, checkpoints), kept apart for
# size; callers use it through this module.
add_checkpoint = _attempts.add_checkpoint
epoch_logs = _attempts.epoch_logs
get_checkpoint = _attempts.get_checkpoint
last_attempt_logged = _attempts.last_attempt_logged
latest_checkpoint = _attempts.latest_checkpoint
list_checkpoints = _attempts.list_checkpoints
prune_periodic = _attempts.prune_periodic
record_epoch = _attempts.record_epoch
record_epochs = _attempts.record_epochs
rewritten_epochs = _attempts.rewritten_epochs

# The reaper's and the dispatchers' statements (messages pending, leases released, jobs
# nobody can run any more), kept apart for size.
finish_cancelled_or_exhausted = _dispatch.finish_cancelled_or_exhausted
finish_orphaned = _dispatch.finish_orphaned
forget_pending = _dispatch.forget_pending
holds_live_lease = _dispatch.holds_live_lease
jobs_to_redispatch = _dispatch.jobs_to_redispatch
mark_dispatched = _dispatch.mark_dispatched
mark_undispatched = _dispatch.mark_undispatched
release_lease = _dispatch.release_lease


# -- jobs --------------------------------------------------------------------------------------
def add_job(session: Session, *, row: JobRow) -> JobRow:
    session.add(row)
    session.flush()
    outbox.record_state(session, job_id=row.id, status=JobStatus.queued)
    return row


def get_job(session: Session, *, job_id: uuid.UUID, scope: Scope) -> JobRow | None:
    return session.scalars(
        select(JobRow).where(JobRow.id == job_id, scope.where(JobRow.project_id))
    ).first()


def list_jobs(
    session: Session, *, scope: Scope, model_id: uuid.UUID | None, limit: int, offset: int
) -> Sequence[JobRow]:
    query = (
        select(JobRow)
        .where(scope.where(JobRow.project_id))
        .order_by(JobRow.created_at.desc(), JobRow.id)
    )
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
            pending_dispatch_at=None,
        )
        .returning(JobRow.attempt)
    )
    attempt: int | None = result.scalar_one_or_none()
    if attempt is not None:
        outbox.record_state(session, job_id=job_id, status=JobStatus.running)
    return attempt


def renew_lease(
    session: Session, *, job_id: uuid.UUID, attempt: int, lease_s: float
) -> bool | None:
    """Extend the lease of this attempt. Returns the cancel flag, or None if the attempt no
    longer owns the job (it was reclaimed, cancelled or finished)."""
    now = utcnow()
    result = session.execute(
        update(JobRow)
        .where(
            JobRow.id == job_id,
            JobRow.attempt == attempt,
            JobRow.status == JobStatus.running,
            JobRow.lease_owner.is_not(None),
        )  # a released lease stays released
        .values(lease_expires_at=now + timedelta(seconds=lease_s))
        .returning(JobRow.cancel_requested)
    )
    return result.scalar_one_or_none()


def finish_job(
    session: Session,
    *,
    job_id: uuid.UUID,
    attempt: int,
    status: JobStatus,
    error_type: str | None = None,
    error_message: str | None = None,
    result: dict[str, Any] | None = None,
    result_dataset_id: uuid.UUID | None = None,
) -> bool:
    """End the attempt's job (fenced by `attempt`); a predict or evaluate job with what it
    produced. A job whose cancel was acknowledged never ends `succeeded`: False, nothing
    written (the caller ends it cancelled)."""
    now = utcnow()
    fence = [JobRow.id == job_id, JobRow.attempt == attempt, JobRow.status == JobStatus.running]
    if status == JobStatus.succeeded:
        fence.append(JobRow.cancel_requested.is_(False))
    done: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(JobRow)
        .where(*fence)
        .values(status=status, error_type=error_type, error_message=error_message,
                finished_at=now, updated_at=now, lease_owner=None, lease_expires_at=None,
                result=result, result_dataset_id=result_dataset_id)
    )  # fmt: skip
    if done.rowcount:
        outbox.record_state(session, job_id=job_id, status=status)
    return bool(done.rowcount)


def oldest_queued(session: Session, *, project_id: uuid.UUID) -> uuid.UUID | None:
    return session.scalars(
        select(JobRow.id)
        .where(JobRow.project_id == project_id, JobRow.status == JobStatus.queued)
        .order_by(JobRow.created_at, JobRow.id)
        .limit(1)
    ).first()


def request_cancel(session: Session, *, job_id: uuid.UUID, scope: Scope) -> JobRow | None:
    """Queued jobs are cancelled at once; running ones get the flag their worker checks."""
    if get_job(session, job_id=job_id, scope=scope) is None:
        return None
    now = utcnow()
    ended: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.status == JobStatus.queued)
        .values(status=JobStatus.cancelled, cancel_requested=True, finished_at=now, updated_at=now)
    )
    if ended.rowcount:
        outbox.record_state(session, job_id=job_id, status=JobStatus.cancelled)
    session.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.status == JobStatus.running)
        .values(cancel_requested=True, updated_at=now)
    )
    return get_job(session, job_id=job_id, scope=scope)


def count_by_status(session: Session) -> dict[str, int]:
    """Jobs of every project by status, for the metrics scrape: one GROUP BY."""
    rows = session.execute(select(JobRow.status, func.count()).group_by(JobRow.status)).all()
    return {str(status): int(count) for status, count in rows}


def cancel_acknowledged(session: Session, *, job_id: uuid.UUID, attempt: int) -> bool:
    """Whether the attempt still owns the job and its cancel was requested."""
    return bool(
        session.scalar(
            select(JobRow.cancel_requested).where(
                JobRow.id == job_id, JobRow.attempt == attempt, JobRow.status == JobStatus.running
            )
        )
    )


def end_attempt(
    session: Session, *, job_id: uuid.UUID, attempt: int, error_type: str, error_message: str
) -> str | None:
    """A transient fault persisted through the attempt's retries: "redispatch" (the lease is
    released and the job marked as sent, for the caller to send), or "failed" when it had no
    attempt left; None if the attempt no longer owns the job."""
    row = session.scalars(
        select(JobRow)
        .where(JobRow.id == job_id, JobRow.attempt == attempt, JobRow.status == JobStatus.running)
        .with_for_update()
    ).first()
    if row is None:
        return None
    if row.cancel_requested:
        finish_job(session, job_id=job_id, attempt=attempt, status=JobStatus.cancelled)
        return "cancelled"
    if row.attempt >= row.max_attempts:
        finish_job(session, job_id=job_id, attempt=attempt, status=JobStatus.failed,
                   error_type=error_type, error_message=error_message)  # fmt: skip
        return "failed"
    _dispatch.release_lease(session, job_id=job_id, attempt=attempt, spent=True)
    return "redispatch"
