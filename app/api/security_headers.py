"""The security headers every HTTP response carries, added as the response starts (a pure ASGI
middleware, so streamed bodies such as the event stream pass through untouched).

API responses get a Content-Security-Policy that allows nothing: they are data, never pages. The
documentation pages (/docs, /redoc) load Swagger UI and ReDoc from this server and run no inline
script, so their policy allows scripts and styles from this origin only. The dashboard (/ui) runs
its own scripts and styles from this origin alone and calls the API there. Tenant data under /v1
and /v2/models (the Open Inference Protocol's model routes) is not kept by caches (`no-store`)
unless the route set its own Cache-Control (the event stream's no-cache) or an ETag, which asks
for revalidation instead. A header the route set itself is never replaced."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMMON = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# The /docs and /redoc pages (app.api.docs): scripts, stylesheets and the icon from this origin
# only, and no inline script. Inline styles stay allowed: Swagger UI sets style attributes and
# ReDoc inserts its styles as <style> elements. ReDoc runs its search index in a web worker made
# from a blob; both fetch the OpenAPI document (and "Try it out" calls the API) on this origin.
DOCS_CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "worker-src blob:",
    "frame-ancestors 'none'",
    "base-uri 'self'",
    "form-action 'self'",
])  # fmt: skip
# The dashboard (app.api.routes.ui): its own files and uPlot's, all from this origin, no inline
# script or style (uPlot sizes its elements through the style property, which CSP does not
# govern); the empty data: icon keeps the browser from asking for /favicon.ico; calls go to /v1.
UI_CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'none'",
])  # fmt: skip
UI_PREFIX = "/ui"
TENANT_PREFIXES = ("/v1/", "/v2/models/")


def policy(path: str, docs_paths: frozenset[str]) -> str:
    if path in docs_paths:
        return DOCS_CSP
    if path == UI_PREFIX or path.startswith(f"{UI_PREFIX}/"):
        return UI_CSP
    return API_CSP


class SecurityHeaders:
    def __init__(self, app: ASGIApp, docs_paths: Iterable[str | None] = ()) -> None:
        """`docs_paths`: the pages that get DOCS_CSP (None entries, a disabled page, are
        skipped)."""
        self.app = app
        self.docs_paths = frozenset(p for p in docs_paths if p)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):  # served under a prefix (uvicorn --root-path)
            path = path[len(root) :]
        csp = policy(path, self.docs_paths)
        tenant = path.startswith(TENANT_PREFIXES)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in COMMON.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", csp)
                if tenant and "cache-control" not in headers:
                    revalidate = "etag" in headers
                    headers["Cache-Control"] = "private, no-cache" if revalidate else "no-store"
            await send(message)

        await self.app(scope, receive, with_headers)
