"""What makes the API safe to reach from a browser, wired in one place: the request guard
(content types and text, app.api.request_guard), CORS for the origins CORS_ORIGINS names (none by
default: no CORS headers at all), and the security headers (app.api.security_headers).

They wrap everything else, so their answers (a 415, a 422, a preflight) and every other response
carry the headers: the security headers outermost, then CORS, which answers a preflight before any
authentication (a preflight carries no credentials) and adds its headers to the guard's
refusals, so a browser client can read them."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from app.api.docs import DOCS_URL, REDOC_URL
from app.api.request_guard import RequestGuard
from app.api.security_headers import SecurityHeaders
from app.core.config import Settings

CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
CORS_ALLOW_HEADERS = (
    "Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "X-Request-ID",
    "Inference-Header-Content-Length",
)  # fmt: skip
# What a script may read from a response besides the CORS-safelisted headers.
CORS_EXPOSE_HEADERS = (
    "Retry-After", "Location", "WWW-Authenticate", "Content-Disposition", "X-Request-ID",
    "Idempotent-Replayed",
    "Inference-Header-Content-Length",
)  # fmt: skip
CORS_MAX_AGE_S = 600


def install(app: FastAPI, settings: Settings) -> None:
    """Call after every other middleware is added (Starlette runs the last added first)."""
    app.add_middleware(RequestGuard)
    if settings.cors_origins:
        # Keys travel in the Authorization header, which a script sets itself: no cookies, so
        # no credentialed CORS.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_ALLOW_HEADERS,
            expose_headers=CORS_EXPOSE_HEADERS,
            allow_credentials=False,
            max_age=CORS_MAX_AGE_S,
        )
    app.add_middleware(SecurityHeaders, docs_paths=(DOCS_URL, REDOC_URL))
