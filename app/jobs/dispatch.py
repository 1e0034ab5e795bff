"""Sending a job its message, tracked in the job's row: a message is marked pending in the
transaction that needs it sent (or by `dispatch_if_none_pending`), sent after that commits, and
cleared by the claim. A job never has two messages pending, so the queue cannot flood."""

from __future__ import annotations

import logging
import uuid

from app.db.session import unit_of_work
from app.jobs import repository as repo
from app.runtime.context import AppContext

log = logging.getLogger(__name__)


def dispatch(ctx: AppContext, job_id: uuid.UUID) -> None:
    """Ring the doorbell for a job whose row says a message is pending (it was marked in the
    transaction that committed). A failure marks it undispatched; the reaper sends it again."""
    if ctx.dispatcher is None:
        return
    try:
        ctx.dispatcher.dispatch(job_id)
    except Exception:
        log.exception("could not dispatch job %s; the reaper will retry", job_id)
        try:
            with unit_of_work(ctx.sessions) as session:
                repo.mark_undispatched(session, job_id=job_id)
        except Exception:
            log.exception("could not mark job %s undispatched", job_id)


def dispatch_if_none_pending(ctx: AppContext, job_id: uuid.UUID) -> None:
    """Send the job a message unless one is pending already."""
    if ctx.dispatcher is None:
        return
    with unit_of_work(ctx.sessions) as session:
        marked = repo.mark_dispatched(session, job_id=job_id)
    if marked:
        dispatch(ctx, job_id)
