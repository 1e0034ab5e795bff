"""The live stream of a job as Server-Sent Events: one `epoch` event per committed epoch row
(id = epoch), then one `status` event when the job ends. Rows are read from the database, so the
stream works the same with the in-process executor and with Celery workers on other machines,
and a client reconnecting with Last-Event-ID resumes after that epoch.

The stream is async: it holds no worker thread while it waits, each database poll runs in a
thread briefly. A stream lasts at most `events_max_s`; clients reconnect with Last-Event-ID (as
EventSource does by itself), so a server can always drain its connections."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio

from app.core.errors import NotFound
from app.db.models import EpochLogRow, JobStatus
from app.db.session import unit_of_work
from app.jobs import repository as repo
from app.jobs.context import JobsContext

PAGE = 500


def _event(kind: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, allow_nan=False)}\n\n"


@dataclass
class _Snapshot:
    status: JobStatus
    summary: dict[str, Any]
    rows: list[EpochLogRow]


def _read(ctx: JobsContext, job_id: uuid.UUID, after: int) -> _Snapshot | None:
    with unit_of_work(ctx.sessions) as session:
        # Status first, rows second: if the job had ended, every row is already visible.
        job = repo.get_job(session, job_id=job_id)
        if job is None:
            return None
        error = None if job.error_type is None else {"type": job.error_type,
                                                     "message": job.error_message}  # fmt: skip
        summary = {"status": job.status, "epochs_done": job.epochs_done, "error": error}
        rows = list(repo.epoch_logs(session, job_id=job_id, after=after, limit=PAGE))
        return _Snapshot(JobStatus(job.status), summary, rows)


def finished_with_nothing_after(ctx: JobsContext, job_id: uuid.UUID, after: int) -> bool:
    """True for a reconnect to an ended job that has nothing more to send (answered 204, which
    tells EventSource to stop reconnecting). Raises NotFound for an unknown job."""
    snapshot = _read(ctx, job_id, after)
    if snapshot is None:
        raise NotFound(f"job {job_id} does not exist", loc=["path", "job_id"])
    return snapshot.status.is_terminal and not snapshot.rows


async def stream(ctx: JobsContext, *, job_id: uuid.UUID, after: int) -> AsyncIterator[str]:
    settings = ctx.settings
    started = last_sent = time.monotonic()
    yield "retry: 1000\n\n"
    while not ctx.stopping.is_set() and time.monotonic() - started < settings.events_max_s:
        snapshot = await anyio.to_thread.run_sync(_read, ctx, job_id, after)
        if snapshot is None:
            return
        for row in snapshot.rows:
            data = {"epoch": row.epoch, "logs": row.logs, "attempt": row.attempt}
            yield _event("epoch", data, row.epoch)
            after = row.epoch
            last_sent = time.monotonic()
        if len(snapshot.rows) == PAGE:
            continue
        if snapshot.status.is_terminal:
            yield _event("status", snapshot.summary)
            return
        if time.monotonic() - last_sent >= settings.events_keepalive_s:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(settings.events_poll_s)
