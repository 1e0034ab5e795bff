"""The FastAPI application: `create_app()` wires settings, database, dispatcher and reaper.

`python -m uvicorn app.main:app` serves it. With no DATABASE_URL and no REDIS_URL it runs the
embedded default: a migrated SQLite file, a local artifact folder and an in-process job executor.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from app.api import browser_safety, docs, errors, openapi
from app.api.audit import AuditLog, AuditWriter
from app.api.auth import Authenticate, caller
from app.api.direct_routes import DirectRoutes
from app.api.idempotency import Idempotency
from app.api.idempotency_openapi import document as document_idempotency
from app.api.middleware import BodyLimit
from app.api.observe import Observe
from app.api.predict_lane import PredictLane
from app.api.protocol_errors import ProtocolErrors
from app.api.routes import (
    admin,
    checkpoint_exports,
    datasets,
    inference,
    jobs,
    models,
    ops,
    serving,
    ui,
    webhooks,
)
from app.api.shutdown import stop_on_signals
from app.auth.ratelimit import RateLimiter
from app.auth.service import AuthMode
from app.core.config import Settings, get_settings
from app.core.logging import configure as configure_logging
from app.db.migrate import upgrade_head
from app.jobs.queue import make_dispatcher, queue_depth
from app.jobs.reaper import recover, start_reaper
from app.jobs.telemetry import JobsCollector
from app.runtime.context import build_context
from app.runtime.readiness import Readiness
from app.webhooks.sender import start_sender

DESCRIPTION = """Keras-style training as a service. Describe a model as Keras's `model.to_json()`
writes it, compile it with Keras's optimizer, loss and metric names, and fit, evaluate and predict
over HTTP/JSON. Every epoch's logs are stored as the epoch ends and stream live."""
SINGLE_USER_NOTE = """**Single-user mode: authentication is off.** No API key exists and
AUTH_REQUIRED is false, so every request acts as the one implicit admin of the `default`
project. Create a key (`python -m app.admin keys create --project NAME --role admin`) to turn
authentication on.

"""
log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(log_format=settings.log_format)
        ctx = build_context(settings)
        if settings.should_migrate_on_start:
            upgrade_head(settings.resolved_database_url)
        ctx.dispatcher = make_dispatcher(ctx)
        app.state.ctx = ctx
        app.state.auth_mode = AuthMode(settings.auth_required, settings.auth_cache_s)
        app.state.rate_limiter = RateLimiter(settings.quota_burst)
        app.state.audit_writer = AuditWriter(ctx, settings.audit_flush_s)
        app.state.predict_lane = PredictLane(
            settings.predict_threads, settings.predict_batch_wait_s
        )
        app.state.readiness = Readiness(ctx)
        # Scrape-time metrics of this app (the process's own are in the default registry).
        app.state.metrics_registry = CollectorRegistry()
        app.state.metrics_registry.register(JobsCollector(ctx, queue_depth))
        try:
            _announce_mode(app)
            recover(ctx)  # pick up what a previous process left behind
        except Exception:
            # The database is unreachable: serve anyway, so that /healthz stays live and
            # /readyz says what is wrong; the reaper's next pass tries again.
            log.exception("start-up could not reach the database")
        start_reaper(ctx)
        start_sender(ctx)
        try:
            with stop_on_signals(ctx.stopping):
                yield
        finally:
            app.state.readiness.close()
            # Off the event loop: it waits for the predicts still running.
            await anyio.to_thread.run_sync(app.state.predict_lane.close)
            app.state.audit_writer.close()
            ctx.close()

    # /docs and /redoc are this app's own pages (app.api.docs), which need no CDN.
    app = FastAPI(title="fitapi", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  generate_unique_id_function=openapi.operation_id)  # fmt: skip
    errors.install(app)
    # Innermost: predict, its hottest route, answered without FastAPI's routing.
    app.add_middleware(DirectRoutes, names=inference.DIRECT_ROUTES,
                       handler_for=inference.direct_handler)  # fmt: skip
    app.add_middleware(AuditLog)
    # Inside the body limit (a retry's body is read through it), outside the audit (a replay
    # creates nothing again).
    app.add_middleware(Idempotency)
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_request_bytes,
        uploads={("POST", "/v1/datasets"): settings.dataset_max_bytes},
    )  # fmt: skip
    # Outside the audit (which reads the caller it finds): every /v1 request is authenticated
    # and rate-limited before its body is read.
    app.add_middleware(Authenticate)
    # Every route but /healthz needs a caller; routes also take it (`Caller`) for its scope.
    authenticated = [Depends(caller)]
    for router in (models.router, jobs.fit_router, inference.router, serving.tf_router,
                   jobs.router, checkpoint_exports.router, datasets.router, webhooks.router,
                   admin.router, serving.v2_router):  # fmt: skip
        app.include_router(router, dependencies=authenticated)
    document_idempotency(app)
    openapi.install(app)
    _describe_mode(app)
    docs.install(app)

    @app.get(
        "/healthz",
        tags=["meta"],
        summary="Liveness",
        responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
    )
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(ops.router)  # /readyz, /metrics: their own access rules
    ui.install(app)  # /ui, the dashboard: static files, no key (its calls to /v1 carry one)
    app.include_router(serving.public_router)  # /v2 health and server metadata: public
    # Last, so that it wraps every other middleware (authentication included).
    browser_safety.install(app, settings)
    # Around every refusal: the predict protocols' errors carry their `error` field.
    app.add_middleware(ProtocolErrors)
    # Outermost of all: the request id is on every response and log record, refusals included.
    app.add_middleware(Observe)
    return app


def _announce_mode(app: FastAPI) -> None:
    if app.state.auth_mode.enabled(app.state.ctx):
        log.info("authentication is on: every request needs an API key")
    else:
        log.warning("single-user mode: authentication is off (no API key exists and "
                    "AUTH_REQUIRED is false); every request acts as the admin of the "
                    "default project")  # fmt: skip


def _describe_mode(app: FastAPI) -> None:
    """The OpenAPI document (and so /docs) says when the server runs single-user."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = dict(build())
        ctx = getattr(app.state, "ctx", None)
        mode = getattr(app.state, "auth_mode", None)
        if ctx is not None and mode is not None and not mode.enabled(ctx):
            info = dict(schema["info"])
            info["description"] = SINGLE_USER_NOTE + DESCRIPTION
            schema["info"] = info
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def __getattr__(name: str) -> FastAPI:
    # `app` is built on first access, not at import time.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
