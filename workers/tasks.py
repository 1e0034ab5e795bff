"""Celery tasks: each decodes ids and calls the runner, which checks the world (an atomic claim
in the database) before acting."""

from __future__ import annotations

import uuid
from functools import lru_cache

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


@app.task(name=RUN_FIT_JOB)
def run_fit_job_task(job_id: str) -> None:
    run_job(context(), uuid.UUID(job_id))
