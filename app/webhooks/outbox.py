"""The outbox: a delivery row per interested webhook, added in the transaction of the job change
it reports, so an event is recorded exactly when its change commits (and never when it rolls
back). The jobs domain calls `record` once per state change and `record_epochs` with epoch rows;
this module knows the tables only, not how deliveries are sent."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import JobRow, WebhookDeliveryRow, WebhookRow

STATE_EVENTS = ("job.queued", "job.running", "job.succeeded", "job.failed", "job.cancelled")
EPOCH_EVENT = "job.epoch"
EVENTS = (*STATE_EVENTS, EPOCH_EVENT)

_JOB_COLUMNS = (
    JobRow.id, JobRow.project_id, JobRow.model_id, JobRow.kind, JobRow.status, JobRow.attempt,
    JobRow.epochs, JobRow.epochs_done, JobRow.error_type, JobRow.error_message,
    JobRow.created_at, JobRow.started_at, JobRow.finished_at,
)  # fmt: skip


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _subscribers(session: Session, *, job_id: uuid.UUID, event: str) -> list[uuid.UUID]:
    """Active webhooks of the job's project that want `event`: one query, and nothing more
    to do for a project without webhooks."""
    project = select(JobRow.project_id).where(JobRow.id == job_id).scalar_subquery()
    hooks = session.execute(
        select(WebhookRow.id, WebhookRow.events)
        .where(WebhookRow.project_id == project, WebhookRow.active.is_(True))
    ).all()  # fmt: skip
    return [hook_id for hook_id, events in hooks if event in events]


def _job(session: Session, job_id: uuid.UUID) -> dict[str, Any] | None:
    # Columns, not the entity: the session may hold a stale JobRow that a bulk UPDATE of this
    # transaction has changed.
    row = session.execute(select(*_JOB_COLUMNS).where(JobRow.id == job_id)).first()
    if row is None:
        return None
    error = None
    if row.error_type is not None:
        error = {"type": row.error_type, "message": row.error_message}
    return {"id": str(row.id), "project_id": str(row.project_id), "model_id": str(row.model_id),
            "kind": row.kind, "status": row.status, "attempt": row.attempt,
            "epochs": row.epochs, "epochs_done": row.epochs_done, "error": error,
            "created_at": _iso(row.created_at), "started_at": _iso(row.started_at),
            "finished_at": _iso(row.finished_at)}  # fmt: skip


def _add(
    session: Session,
    *,
    hooks: Sequence[uuid.UUID],
    job_id: uuid.UUID,
    event: str,
    datas: Sequence[Mapping[str, Any]],
) -> None:
    """One delivery per webhook and per event's data, in one INSERT."""
    now = utcnow()
    rows = []
    for data in datas:
        for hook_id in hooks:
            delivery_id = uuid.uuid4()
            payload = {"id": str(delivery_id), "type": event, "created_at": now.isoformat(),
                       "webhook_id": str(hook_id), "data": dict(data)}  # fmt: skip
            rows.append({"id": delivery_id, "webhook_id": hook_id, "event": event,
                         "job_id": job_id, "payload": payload, "status": "pending",
                         "attempts": 0, "next_attempt_at": now, "created_at": now})  # fmt: skip
    if rows:
        session.execute(insert(WebhookDeliveryRow), rows)


def record(session: Session, *, job_id: uuid.UUID, event: str) -> None:
    """A job state change (`job.queued`, `job.running`, ...), as the job row stands now in
    this transaction."""
    hooks = _subscribers(session, job_id=job_id, event=event)
    if not hooks:
        return
    job = _job(session, job_id)
    if job is not None:
        _add(session, hooks=hooks, job_id=job_id, event=event, datas=[{"job": job}])


def record_epochs(
    session: Session,
    *,
    job_id: uuid.UUID,
    attempt: int,
    rows: Sequence[tuple[int, Mapping[str, float | None]]],
) -> None:
    """Epoch-end events (`job.epoch`), one per row, for the webhooks that asked for them."""
    if not rows:
        return
    hooks = _subscribers(session, job_id=job_id, event=EPOCH_EVENT)
    job = _job(session, job_id) if hooks else None
    if job is None:
        return
    datas = [{"job": job, "epoch": epoch, "attempt": attempt, "logs": dict(logs)}
             for epoch, logs in rows]  # fmt: skip
    _add(session, hooks=hooks, job_id=job_id, event=EPOCH_EVENT, datas=datas)


def record_state(session: Session, *, job_id: uuid.UUID, status: str) -> None:
    """`record` for the job's new status (`queued` -> `job.queued`)."""
    record(session, job_id=job_id, event=f"job.{status}")
