"""The reaper: re-dispatches queued jobs nobody claimed and running jobs whose lease expired
(they resume from their last checkpoint), and ends jobs that cannot run again. Safe to run in
several processes at once: a duplicate dispatch claims nothing."""

from __future__ import annotations

import logging
import threading

from app.db.base import utcnow
from app.db.session import unit_of_work
from app.jobs import repository as repo
from app.jobs.service import dispatch
from app.jobs.sweeper import Sweeper
from app.runtime import metrics
from app.runtime.context import AppContext

log = logging.getLogger(__name__)


def reap(ctx: AppContext) -> int:
    now = utcnow()
    with unit_of_work(ctx.sessions) as session:
        ended = repo.finish_cancelled_or_exhausted(session, now=now)
        ids = repo.jobs_to_redispatch(
            session, now=now, unclaimed_after_s=ctx.settings.job_unclaimed_after_s
        )
    for action, count in {**ended, "redispatched": len(ids)}.items():
        metrics.reaper_acted(action, count)
    for job_id in ids:
        log.info("re-dispatching job %s", job_id)
        dispatch(ctx, job_id)
    return len(ids)


def start_reaper(ctx: AppContext) -> threading.Thread:
    sweeper = Sweeper(ctx)

    def loop() -> None:
        while not ctx.stopping.wait(ctx.settings.reaper_interval_s):
            try:
                reap(ctx)
            except Exception:
                log.exception("reaper pass failed")
            sweeper.run_if_due()

    thread = threading.Thread(target=loop, name="fitapi-reaper", daemon=True)
    thread.start()
    return thread
