"""The reaper: sends a message to queued jobs that have none pending and to running jobs whose
lease expired (they resume from their last checkpoint), and ends jobs that cannot run again:
cancelled ones, ones out of attempts, and ones nobody took within JOB_ORPHANED_AFTER_S of their
worker stopping (no worker is alive). Every few minutes it also prunes the idempotency keys past
their time. Safe to run in several processes at once: a duplicate message claims nothing, and a
job never has two pending."""

from __future__ import annotations

import logging
import threading
import time

from app.auth import idempotency
from app.db.base import utcnow
from app.db.session import unit_of_work
from app.jobs import repository as repo
from app.jobs.dispatch import dispatch
from app.jobs.sweeper import Sweeper
from app.runtime import metrics
from app.runtime.context import AppContext

log = logging.getLogger(__name__)
# A key past its time is already ignored (a retry takes it over): pruning only bounds the table.
PRUNE_KEYS_EVERY_S = 300.0


def recover(ctx: AppContext) -> int:
    """At start-up: the in-process executor's messages died with the last process, so its
    unfinished jobs need new ones; then a reaper pass."""
    if not ctx.settings.redis_url:
        with unit_of_work(ctx.sessions) as session:
            repo.forget_pending(session)
    return reap(ctx)


def reap(ctx: AppContext) -> int:
    now = utcnow()
    orphaned_after_s = ctx.settings.job_orphaned_after_s
    with unit_of_work(ctx.sessions) as session:
        ended = repo.finish_cancelled_or_exhausted(session, now=now)
        ended["failed"] += repo.finish_orphaned(session, now=now, orphaned_after_s=orphaned_after_s)
        ids = repo.jobs_to_redispatch(session, now=now, orphaned_after_s=orphaned_after_s)
    for action, count in {**ended, "redispatched": len(ids)}.items():
        metrics.reaper_acted(action, count)
    for job_id in ids:
        log.info("re-dispatching job %s", job_id)
        dispatch(ctx, job_id)
    return len(ids)


def start_reaper(ctx: AppContext) -> threading.Thread:
    sweeper = Sweeper(ctx)
    pruned_at = float("-inf")

    def loop() -> None:
        nonlocal pruned_at
        while not ctx.stopping.wait(ctx.settings.reaper_interval_s):
            try:
                reap(ctx)
            except Exception:
                log.exception("reaper pass failed")
            if time.monotonic() - pruned_at >= PRUNE_KEYS_EVERY_S:
                pruned_at = time.monotonic()
                try:
                    idempotency.prune(ctx)
                except Exception:
                    log.exception("pruning idempotency keys failed")
            sweeper.run_if_due()

    thread = threading.Thread(target=loop, name="fitapi-reaper", daemon=True)
    thread.start()
    return thread
