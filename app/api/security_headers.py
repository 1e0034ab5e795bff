"""The security headers every HTTP response carries, added as the response starts (a pure ASGI
middleware, so streamed bodies such as the event stream pass through untouched).

API responses get a Content-Security-Policy that allows nothing: they are data, never pages. The
documentation pages (/docs, /redoc) load Swagger UI and ReDoc from this server and run no inline
script, so their policy allows scripts and styles from this origin only. Tenant data under /v1
is not kept by caches (`no-store`) unless the route set its own Cache-Control (the event
stream's no-cache) or an ETag, which asks for revalidation instead. A header the route set
itself is never replaced."""

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
TENANT_PREFIX = "/v1/"


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
        csp = DOCS_CSP if path in self.docs_paths else API_CSP
        tenant = path.startswith(TENANT_PREFIX)

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
