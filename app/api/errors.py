"""Exception handlers: every error is JSON in FastAPI's `{"detail": [{loc, msg, type}]}` shape,
which `ErrorOut` documents for the routes' declared error responses."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.api.middleware import BodyTooLarge
from app.api.protocol_errors import speaks_protocol, with_error
from app.core.errors import AppError
from app.core.logging import log_context
from app.jobs.failures import describe, is_transient

log = logging.getLogger(__name__)
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts at this request's path, OPTIONS included. Starlette's
    405 names only the first route whose path matched (GET and POST are separate routes)."""
    methods = {"OPTIONS"}
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            methods.add(method)
    return sorted(methods)


class ErrorItem(BaseModel):
    loc: list[str | int] = Field(description="Where the problem is, e.g. body.config.layers.2")
    msg: str
    type: str


class ErrorOut(BaseModel):
    detail: list[ErrorItem]


def error_body(loc: list[str | int], msg: str, kind: str) -> dict[str, object]:
    return {"detail": [{"loc": loc, "msg": msg, "type": kind}]}


def install(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.loc, exc.message, exc.error_type),
            status_code=exc.status_code,
            headers=exc.headers or None,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            # Echoing huge inputs back is useless; keep location, message and type.
            errors.append({"loc": list(err.get("loc", ())), "msg": err.get("msg", ""),
                           "type": err.get("type", "value_error")})  # fmt: skip
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, BodyTooLarge):
            return JSONResponse(
                error_body(["body"], str(exc.__cause__), "payload_too_large"), status_code=413
            )
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code)
        if exc.status_code == 405:
            # OPTIONS is answered for every path; other methods get the full Allow list.
            allow = {"Allow": ", ".join(allowed_methods(request))}
            if request.method == "OPTIONS":
                return Response(status_code=204, headers=allow)
            return JSONResponse(error_body([], str(exc.detail), "method_not_allowed"),
                                status_code=405, headers=allow)  # fmt: skip
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body([], detail, kind), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Answered outside every middleware (Starlette's outermost layer), so the request id
        # middleware has left: put its id back on the log record and the response.
        request_id = getattr(request.state, "request_id", None)
        headers = {"X-Request-ID": request_id} if request_id else {}
        if is_transient(exc):
            # The database or the broker is down for a moment: the client may try again.
            with log_context(request_id=request_id):
                log.warning("transient failure: %s", type(exc).__name__, exc_info=exc)
            unavailable = error_body([], f"{describe(exc)}; try again", "unavailable")
            retry = {**headers, "Retry-After": "1"}
            return JSONResponse(_shaped(request, unavailable), status_code=503, headers=retry)
        with log_context(request_id=request_id):
            log.exception("unhandled error", exc_info=exc)
        body = _shaped(request, error_body([], "internal error", "internal_error"))
        return JSONResponse(body, status_code=500, headers=headers)


def _shaped(request: Request, body: dict[str, object]) -> object:
    """`body` with the predict protocols' `error` on their paths: answered outside every
    middleware, the 500 and 503 do not pass through ProtocolErrors."""
    if speaks_protocol(request.scope.get("path", ""), request.scope.get("root_path", "")):
        return with_error(body)
    return body
