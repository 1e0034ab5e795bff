"""The FastAPI application: `create_app()` wires settings, database, dispatcher and reaper.

`python -m uvicorn app.main:app` serves it. With no DATABASE_URL and no REDIS_URL it runs the
embedded default: a migrated SQLite file, a local artifact folder and an in-process job executor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import errors
from app.api.middleware import BodyLimit
from app.api.routes import checkpoint_exports, datasets, inference, jobs, models
from app.core.config import Settings, get_settings
from app.core.logging import configure as configure_logging
from app.db.migrate import upgrade_head
from app.jobs.queue import make_dispatcher
from app.jobs.reaper import reap, start_reaper
from app.runtime.context import build_context

DESCRIPTION = """Keras-style training as a service. Describe a model as Keras's `model.to_json()`
writes it, compile it with Keras's optimizer, loss and metric names, and fit, evaluate and predict
over HTTP/JSON. Every epoch's logs are stored as the epoch ends and stream live."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging()
        ctx = build_context(settings)
        if settings.should_migrate_on_start:
            upgrade_head(settings.resolved_database_url)
        ctx.dispatcher = make_dispatcher(ctx)
        app.state.ctx = ctx
        reap(ctx)  # pick up what a previous process left behind
        start_reaper(ctx)
        try:
            yield
        finally:
            ctx.close()

    app = FastAPI(title="fitapi", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    errors.install(app)
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_request_bytes,
        uploads={("POST", "/v1/datasets"): settings.dataset_max_bytes},
    )  # fmt: skip
    app.include_router(models.router)
    app.include_router(jobs.fit_router)
    app.include_router(inference.router)
    app.include_router(jobs.router)
    app.include_router(checkpoint_exports.router)
    app.include_router(datasets.router)

    @app.get("/healthz", tags=["meta"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def __getattr__(name: str) -> FastAPI:
    # `app` is built on first access, not at import time.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
