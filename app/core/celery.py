"""make_celery(settings): all task policy (queues, acks, prefetch, timeouts) in one place.

Postgres holds the truth about jobs; Celery only rings the doorbell. Late acks plus a
reject-on-lost-worker policy mean a message survives a crashed worker; duplicates are harmless
because a worker must claim the job row before it runs anything.
"""

from __future__ import annotations

from celery import Celery

from app.core.config import Settings

RUN_FIT_JOB = "fitapi.run_fit_job"


def make_celery(settings: Settings) -> Celery:
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set: Celery needs a broker")
    app = Celery("fitapi", broker=settings.redis_url)
    app.conf.update(
        task_default_queue=settings.celery_queue,
        task_routes={RUN_FIT_JOB: {"queue": settings.celery_queue}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.celery_visibility_timeout_s},
        worker_hijack_root_logger=False,
    )
    return app
