"""Probes and metrics for operators, outside /v1 and the OpenAPI document: /readyz (can this
process serve: database, broker, artifact store) and /metrics (Prometheus text). /healthz, the
liveness probe, is the application's own (app.main)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from app.api.auth import metrics_reader
from app.runtime.metrics import CONTENT_TYPE, exposition
from app.runtime.readiness import OK

router = APIRouter(tags=["meta"])
NO_STORE = {"Cache-Control": "no-store"}


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    """200 with each check's outcome, or 503 naming the checks that failed; what failed and
    why is in the log."""
    checks = await request.app.state.readiness.run()
    failed = [name for name, outcome in checks.items() if outcome != OK]
    body: dict[str, object] = {"status": "not_ready" if failed else "ready", "checks": checks}
    if failed:
        body["failed"] = failed
    return JSONResponse(body, status_code=503 if failed else 200, headers=NO_STORE)


@router.get("/metrics", include_in_schema=False, dependencies=[Depends(metrics_reader)])
def metrics(request: Request) -> Response:
    body = exposition(request.app.state.metrics_registry)
    return Response(body, media_type=CONTENT_TYPE, headers=NO_STORE)
