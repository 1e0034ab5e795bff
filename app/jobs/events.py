"""The live stream of a job as Server-Sent Events: one `epoch` event per committed epoch row
(id = epoch), then one `status` event when the job ends. Rows are read from the database, so the
stream works the same with the in-process executor and with Celery workers on other machines,
and a client reconnecting with Last-Event-ID resumes after that epoch."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from app.core.errors import NotFound
from app.db.models import JobStatus
from app.db.session import unit_of_work
from app.jobs import repository as repo
from app.jobs.context import JobsContext

PAGE = 500


def _event(kind: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, allow_nan=True)}\n\n"


def check_job(ctx: JobsContext, job_id: uuid.UUID) -> None:
    with unit_of_work(ctx.sessions) as session:
        if repo.get_job(session, job_id=job_id) is None:
            raise NotFound(f"job {job_id} does not exist", loc=["path", "job_id"])


def stream(ctx: JobsContext, *, job_id: uuid.UUID, after: int) -> Iterator[str]:
    settings = ctx.settings
    last_sent = time.monotonic()
    yield "retry: 1000\n\n"
    while not ctx.stopping.is_set():
        with unit_of_work(ctx.sessions) as session:
            # Status first, rows second: if the job had ended, every row is already visible.
            job = repo.get_job(session, job_id=job_id)
            if job is None:
                return
            status = JobStatus(job.status)
            rows = repo.epoch_logs(session, job_id=job_id, after=after, limit=PAGE)
            summary = {"status": status.value, "epochs_done": job.epochs_done,
                       "error": None if job.error_type is None else
                       {"type": job.error_type, "message": job.error_message}}  # fmt: skip
        for row in rows:
            yield _event("epoch", {"epoch": row.epoch, "logs": row.logs, "attempt": row.attempt},
                         row.epoch)  # fmt: skip
            after = row.epoch
            last_sent = time.monotonic()
        if len(rows) == PAGE:
            continue
        if status.is_terminal:
            yield _event("status", summary)
            return
        if time.monotonic() - last_sent >= settings.events_keepalive_s:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        time.sleep(settings.events_poll_s)
