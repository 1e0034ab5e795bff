"""Celery tasks: each decodes ids and calls the runner, which checks the world (an atomic claim
in the database) before acting."""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any

from celery.signals import worker_shutting_down

from app.core.celery import RUN_FIT_JOB
from app.core.config import get_settings
from app.core.logging import configure
from app.jobs.queue import make_dispatcher
from app.jobs.telemetry import run_job
from app.runtime.context import AppContext, build_context
from workers.celery_app import app


@lru_cache(maxsize=1)
def context() -> AppContext:
    settings = get_settings()
    configure(log_format=settings.log_format)
    ctx = build_context(settings)
    # A worker sends messages too: the next job of a project that waited for a running slot.
    ctx.dispatcher = make_dispatcher(ctx)
    return ctx


@worker_shutting_down.connect
def _stop_fits(**_: Any) -> None:
    """A warm shutdown (SIGTERM): running fits stop between batches and give their jobs back,
    so another worker resumes them now (docs/operations.md, "Shutdowns"). Seen by the process
    that runs the fits with --pool=solo or --pool=threads, as docs/operations.md runs workers."""
    if context.cache_info().currsize:
        context().stopping.set()


@app.task(name=RUN_FIT_JOB)
def run_fit_job_task(job_id: str) -> None:
    run_job(context(), uuid.UUID(job_id))
