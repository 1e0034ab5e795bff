"""Dispatchers: how a committed job reaches a worker. With a broker, a Celery message sent by
task name (the API never imports the worker code); without one, an in-process executor that
calls the same runner the Celery task calls."""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor

from celery import Celery

from app.core.celery import RUN_FIT_JOB, make_celery
from app.core.config import Settings
from app.jobs.runner import run_fit_job
from app.runtime.context import AppContext, Dispatcher

log = logging.getLogger(__name__)


class CeleryDispatcher:
    def __init__(self, settings: Settings) -> None:
        self.celery: Celery = make_celery(settings)
        self.queue = settings.celery_queue

    def dispatch(self, job_id: uuid.UUID) -> None:
        self.celery.send_task(RUN_FIT_JOB, args=[str(job_id)], queue=self.queue)

    def close(self) -> None:
        self.celery.close()


class LocalDispatcher:
    def __init__(self, ctx: AppContext, workers: int) -> None:
        self.ctx = ctx
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fitapi-job")

    def _run(self, job_id: uuid.UUID) -> None:
        try:
            run_fit_job(self.ctx, job_id)
        except Exception:
            log.exception("job %s crashed in the local executor", job_id)

    def dispatch(self, job_id: uuid.UUID) -> None:
        self.pool.submit(self._run, job_id)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def make_dispatcher(ctx: AppContext) -> Dispatcher:
    if ctx.settings.redis_url:
        return CeleryDispatcher(ctx.settings)
    return LocalDispatcher(ctx, ctx.settings.local_workers)
