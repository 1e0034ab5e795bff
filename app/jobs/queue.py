"""Dispatchers: how a committed job reaches a worker. With a broker, a Celery message sent by
task name (the API never imports the worker code); without one, an in-process executor that
calls the same runner the Celery task calls."""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import Celery

from app.core.celery import RUN_FIT_JOB, make_celery
from app.core.config import Settings
from app.jobs.telemetry import run_job
from app.runtime.context import AppContext, Dispatcher

log = logging.getLogger(__name__)


class CeleryDispatcher:
    def __init__(self, settings: Settings) -> None:
        self.celery: Celery = make_celery(settings)
        self.queue = settings.celery_queue
        self.redis_url = settings.redis_url
        self._redis: Any = None

    def dispatch(self, job_id: uuid.UUID) -> None:
        self.celery.send_task(RUN_FIT_JOB, args=[str(job_id)], queue=self.queue)

    def pending(self) -> int:
        """Messages waiting in the queue: the Redis lists kombu keeps it in (one per priority
        step; messages without a priority go to the first)."""
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(
                self.redis_url or "", socket_timeout=2, socket_connect_timeout=2
            )
        pipe = self._redis.pipeline(transaction=False)
        for name in _priority_lists(self.queue):
            pipe.llen(name)
        return sum(int(n) for n in pipe.execute())

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
        self.celery.close()


def _priority_lists(queue: str) -> list[str]:
    # kombu's Redis transport: the queue's name, then name + "\x06\x16" + step for the others.
    return [queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9))]


class LocalDispatcher:
    def __init__(self, ctx: AppContext, workers: int) -> None:
        self.ctx = ctx
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fitapi-job")
        self._pending = 0
        self._lock = threading.Lock()

    def _run(self, job_id: uuid.UUID) -> None:
        with self._lock:
            self._pending -= 1
        try:
            run_job(self.ctx, job_id)
        except Exception:
            log.exception("job %s crashed in the local executor", job_id)

    def dispatch(self, job_id: uuid.UUID) -> None:
        with self._lock:
            self._pending += 1
        self.pool.submit(self._run, job_id)

    def pending(self) -> int:
        """Dispatches waiting for one of the executor's threads."""
        with self._lock:
            return self._pending

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def make_dispatcher(ctx: AppContext) -> Dispatcher:
    if ctx.settings.redis_url:
        return CeleryDispatcher(ctx.settings)
    return LocalDispatcher(ctx, ctx.settings.local_workers)


def queue_depth(ctx: AppContext) -> int | None:
    """Jobs dispatched and not yet taken by a worker; None without a dispatcher."""
    dispatcher = ctx.dispatcher
    if isinstance(dispatcher, CeleryDispatcher | LocalDispatcher):
        return dispatcher.pending()
    return None
