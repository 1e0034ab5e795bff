"""The SQL of how jobs reach workers and what the reaper ends: a job's pending message (marked
when sent, cleared by the claim, so a job never has two), leases given back, and jobs that
cannot run any more (cancelled, out of attempts, or taken by no worker). `app.jobs.repository`
re-exports these; functions take a session and never commit."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, and_, or_, select, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import JobRow, JobStatus
from app.webhooks import outbox


def finish_cancelled_or_exhausted(session: Session, *, now: datetime) -> dict[str, int]:
    """Running jobs whose lease expired and cannot be claimed again end now: cancelled ones as
    cancelled, ones out of attempts as failed. Returns how many ended each way."""
    expired = and_(JobRow.status == JobStatus.running, JobRow.lease_expires_at < now)
    cancelled = session.scalars(
        update(JobRow)
        .where(expired, JobRow.cancel_requested.is_(True))
        .values(status=JobStatus.cancelled, finished_at=now, updated_at=now, lease_owner=None)
        .returning(JobRow.id)
    ).all()
    failed = session.scalars(
        update(JobRow)
        .where(expired, JobRow.attempt >= JobRow.max_attempts)
        .values(status=JobStatus.failed, finished_at=now, updated_at=now, lease_owner=None,
                error_type="WorkerLost",
                error_message="the worker stopped renewing its lease and no attempts are left")
        .returning(JobRow.id)
    ).all()  # fmt: skip
    for job_id in cancelled:
        outbox.record_state(session, job_id=job_id, status=JobStatus.cancelled)
    for job_id in failed:
        outbox.record_state(session, job_id=job_id, status=JobStatus.failed)
    return {"cancelled": len(cancelled), "failed": len(failed)}


def jobs_to_redispatch(
    session: Session, *, now: datetime, orphaned_after_s: float
) -> list[uuid.UUID]:
    """Jobs that need a message, marked as sent (the caller sends them once this commits):
    running jobs whose lease expired and that have no message pending, and queued jobs with
    none pending or whose message nobody claimed within `orphaned_after_s` (a broker may lose
    one). A job never has two messages pending from here, so a queue cannot flood."""
    stale = now - timedelta(seconds=orphaned_after_s)
    ids = session.scalars(
        select(JobRow.id).where(
            or_(
                and_(
                    JobRow.status == JobStatus.queued,
                    or_(JobRow.pending_dispatch_at.is_(None), JobRow.pending_dispatch_at < stale),
                ),
                and_(
                    JobRow.status == JobStatus.running,
                    JobRow.lease_expires_at < now,
                    JobRow.attempt < JobRow.max_attempts,
                    JobRow.cancel_requested.is_(False),
                    JobRow.pending_dispatch_at.is_(None),
                ),
            )
        )
    ).all()
    if ids:
        session.execute(
            update(JobRow)
            .where(JobRow.id.in_(ids))
            .values(dispatched_at=now, pending_dispatch_at=now)
        )
    return list(ids)


def finish_orphaned(session: Session, *, now: datetime, orphaned_after_s: float) -> int:
    """Running jobs whose lease expired and whose message nobody claimed within
    `orphaned_after_s` end failed: no worker is alive to take them."""
    stale = now - timedelta(seconds=orphaned_after_s)
    ended = session.scalars(
        update(JobRow)
        .where(JobRow.status == JobStatus.running, JobRow.lease_expires_at < now,
               JobRow.pending_dispatch_at < stale)
        .values(status=JobStatus.failed, finished_at=now, updated_at=now, lease_owner=None,
                pending_dispatch_at=None, error_type="WorkerLost",
                error_message=f"no worker took the job within {orphaned_after_s:g} s of its "
                "last worker stopping")
        .returning(JobRow.id)
    ).all()  # fmt: skip
    for job_id in ended:
        outbox.record_state(session, job_id=job_id, status=JobStatus.failed)
    return len(ended)


def mark_dispatched(session: Session, *, job_id: uuid.UUID) -> bool:
    """Note that a message for the job is about to be sent; False if one is pending already
    or the job no longer waits for one."""
    now = utcnow()
    done: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.pending_dispatch_at.is_(None),
               JobRow.status.in_([JobStatus.queued, JobStatus.running]))
        .values(dispatched_at=now, pending_dispatch_at=now)
    )  # fmt: skip
    return bool(done.rowcount)


def mark_undispatched(session: Session, *, job_id: uuid.UUID) -> None:
    """The job's message was consumed without a claim (it waits for its project's running slot)
    or could not be sent: the reaper's next pass sends another."""
    session.execute(update(JobRow).where(JobRow.id == job_id).values(pending_dispatch_at=None))


def forget_pending(session: Session) -> None:
    """The in-process executor's messages died with the process: every unfinished job needs a
    new one."""
    session.execute(
        update(JobRow)
        .where(JobRow.status.in_([JobStatus.queued, JobStatus.running]))
        .values(pending_dispatch_at=None)
    )


def release_lease(session: Session, *, job_id: uuid.UUID, attempt: int, spent: bool) -> bool:
    """The attempt stops without ending the job (its process shuts down, or a transient fault
    persisted): its lease expires now and the job is marked as sent, for the caller to send it
    at once. An attempt that was not `spent` (a shutdown) gives its attempt back. False if the
    attempt no longer owns the job."""
    now = utcnow()
    done: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.attempt == attempt, JobRow.status == JobStatus.running,
               JobRow.lease_owner.is_not(None))
        .values(lease_owner=None, lease_expires_at=now, updated_at=now, dispatched_at=now,
                pending_dispatch_at=now,
                max_attempts=JobRow.max_attempts + (0 if spent else 1))
    )  # fmt: skip
    return bool(done.rowcount)


def holds_live_lease(session: Session, *, host: str, now: datetime) -> bool:
    """Whether a worker process on `host` holds a running job's lease that has not expired
    (lease owners are `host:pid:thread`)."""
    found = session.scalar(
        select(JobRow.id)
        .where(JobRow.status == JobStatus.running,
               JobRow.lease_owner.startswith(f"{host}:", autoescape=True),
               JobRow.lease_expires_at > now)
        .limit(1)
    )  # fmt: skip
    return found is not None
