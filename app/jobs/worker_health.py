"""Whether a worker is busy with a job: its solo pool answers no Celery ping while a fit runs,
but its heartbeat keeps that job's lease fresh."""

from __future__ import annotations

from app.db.base import utcnow
from app.db.session import unit_of_work
from app.jobs import repository as repo
from app.runtime.context import AppContext


def busy_with_a_live_lease(ctx: AppContext, *, host: str) -> bool:
    with unit_of_work(ctx.sessions) as session:
        return repo.holds_live_lease(session, host=host, now=utcnow())
