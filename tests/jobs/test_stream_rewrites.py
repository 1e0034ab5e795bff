"""The event stream of a job whose attempt was redelivered: the rows the new attempt rewrites
are sent again (with its attempt number), nothing else is sent twice, and a client reconnecting
with Last-Event-ID gets only what it lacks."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from app.db.base import utcnow
from app.db.models import JobRow, JobStatus
from app.db.scope import SYSTEM
from app.db.session import unit_of_work
from app.jobs import events, service
from app.jobs import repository as repo
from app.jobs.schemas import FitRequest
from app.models import service as models
from app.models.schemas import ModelCreate
from tests.support import scenario
from tests.support.sse import parse_events


def _job(ctx: Any) -> uuid.UUID:
    model = models.create_model(ctx, scope=SYSTEM, body=ModelCreate(config=scenario.MODEL, seed=3))
    body = FitRequest(**scenario.fit_body(epochs=6, callbacks=[]))
    return service.submit_fit(ctx, scope=SYSTEM, model_id=model.id, body=body).id


def _claim(ctx: Any, job_id: uuid.UUID) -> int:
    with unit_of_work(ctx.sessions) as s:
        s.execute(update(JobRow).where(JobRow.id == job_id)
                  .values(lease_expires_at=utcnow() - timedelta(seconds=1)))  # fmt: skip
        attempt = repo.claim_job(s, job_id=job_id, owner="test", lease_s=60)
    assert attempt is not None
    return attempt


def _write(ctx: Any, job_id: uuid.UUID, attempt: int, epochs: range, first: bool = False) -> None:
    rows = [(e, {"loss": float(attempt * 10 + e)}) for e in epochs]
    with unit_of_work(ctx.sessions) as s:
        assert repo.record_epochs(s, job_id=job_id, attempt=attempt, rows=rows,
                                  first_of_attempt=first)  # fmt: skip


def test_rewritten_epochs_are_sent_again(pg_ctx: Any) -> None:
    job_id = _job(pg_ctx)
    first = _claim(pg_ctx, job_id)
    _write(pg_ctx, job_id, first, range(0, 4), first=True)

    async def collect() -> list[str]:
        chunks: list[str] = []
        async for chunk in events.stream(pg_ctx, scope=SYSTEM, job_id=job_id, after=-1):
            chunks.append(chunk)
            got = parse_events(chunks)
            if [d["epoch"] for k, d in got if k == "epoch"] == [0, 1, 2, 3]:
                # The first attempt dies; the second resumes from epoch 1's checkpoint.
                second = await asyncio.to_thread(_claim, pg_ctx, job_id)
                await asyncio.to_thread(_write, pg_ctx, job_id, second, range(2, 4), True)
                await asyncio.to_thread(_write, pg_ctx, job_id, second, range(4, 6))
                with unit_of_work(pg_ctx.sessions) as s:
                    repo.finish_job(s, job_id=job_id, attempt=second,
                                    status=JobStatus.succeeded)  # fmt: skip
        return chunks

    got = parse_events(asyncio.run(asyncio.wait_for(collect(), 30)))
    sent = [(d["epoch"], d["attempt"], d["logs"]["loss"]) for k, d in got if k == "epoch"]
    assert sent == [(0, 1, 10.0), (1, 1, 11.0), (2, 1, 12.0), (3, 1, 13.0),
                    (2, 2, 22.0), (3, 2, 23.0), (4, 2, 24.0), (5, 2, 25.0)]  # fmt: skip
    assert got[-1] == ("status", {"status": "succeeded", "epochs_done": 6, "error": None})

    # A client that had everything up to epoch 3 (as written by attempt 2) gets 4 and 5 only.
    async def reconnect() -> list[str]:
        return [c async for c in events.stream(pg_ctx, scope=SYSTEM, job_id=job_id, after=3)]

    again = parse_events(asyncio.run(asyncio.wait_for(reconnect(), 30)))
    assert [(k, d.get("epoch")) for k, d in again] == [("epoch", 4), ("epoch", 5),
                                                       ("status", None)]  # fmt: skip
    assert events.finished_with_nothing_after(pg_ctx, SYSTEM, job_id, 5)
