"""Every request's id and metrics, in one ASGI middleware that wraps all the others.

The id is the client's `X-Request-ID` when it is sane (1 to 128 characters of letters, digits
and `._:=+/@-`), else a new one; it is on every log record of the request and on every response,
errors and refusals by other middleware included (a 500's handler reads it from the request's
state). The metrics count each request and its duration by method, route template and status:
the template of the route that answered, or of the route the path would match when a middleware
refused the request before routing, or `unmatched`; never the raw path, which holds ids."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.logging import log_context
from app.runtime import metrics

HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._:=+/@-]{1,128}")
UNMATCHED = "unmatched"
# A label value per method a client could invent would grow without bound.
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SANE.fullmatch(text) else None
    return None


def route_template(scope: Scope) -> str:
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    return _find(getattr(getattr(app, "router", None), "routes", ()), scope) or UNMATCHED


def _find(routes: Iterable[BaseRoute], scope: Scope) -> str | None:
    """The template of the route `scope` would reach: the first full match, else the first
    route whose path matched but not its method. Included routers are searched through (their
    routes carry the full path: the routers here set their prefix themselves)."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.NONE:
            continue
        children = getattr(route, "routes", None) or getattr(
            getattr(route, "original_router", None), "routes", None
        )
        found = _find(children, scope) if children else getattr(route, "path", None)
        if match == Match.FULL and found:
            return str(found)
        if partial is None and found:
            partial = str(found)
    return partial


class Observe:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # unless a response starts: an exception escaped every handler
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            with log_context(request_id=request_id):
                await self.app(scope, receive, send_with_id)
        finally:
            method = scope.get("method", "")
            labels = (method if method in METHODS else "other", route_template(scope), str(status))
            metrics.REQUESTS.labels(*labels).inc()
            metrics.REQUEST_SECONDS.labels(*labels).observe(time.perf_counter() - started)
