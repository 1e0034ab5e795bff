"""Exception handlers: every error is JSON in FastAPI's `{"detail": [{loc, msg, type}]}` shape."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.core.errors import AppError

log = logging.getLogger(__name__)


def error_body(loc: list[str | int], msg: str, kind: str) -> dict[str, object]:
    return {"detail": [{"loc": loc, "msg": msg, "type": kind}]}


def install(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.loc, exc.message, exc.error_type), status_code=exc.status_code
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            # Echoing huge inputs back is useless; keep location, message and type.
            errors.append({"loc": list(err.get("loc", ())), "msg": err.get("msg", ""),
                           "type": err.get("type", "value_error")})  # fmt: skip
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body([], "internal error", "internal_error"), status_code=500)
