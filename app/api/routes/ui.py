"""The dashboard at /ui: static files that ship in the package (app/api/static/ui, and uPlot,
vendored under app/api/static/vendor/uplot), served as they are. Nothing here needs a key: the
page holds no data, and its own calls to /v1 carry the key the user enters.

/ui redirects to /ui/ (relative, so it works under a root path), whose index.html is a single
page application with hash routes (#/jobs, #/models, #/jobs/<id>). The files are revalidated on
every load (`no-cache` with their ETag), so an upgraded server is never shown with stale
scripts. Their Content-Security-Policy is app.api.security_headers.UI_CSP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from app.api.errors import error_body

STATIC = Path(__file__).resolve().parents[1] / "static"
UI_DIR = STATIC / "ui"
UPLOT_DIR = STATIC / "vendor" / "uplot"
PREFIX = "/ui"
# Python's mimetypes may read an older table from the system; a module script must be served
# with a JavaScript type (nosniff is on).
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
ALLOW = {"Allow": "GET, HEAD, OPTIONS"}


class Revalidated(StaticFiles):
    """StaticFiles whose answers are revalidated on each use and typed by suffix. Other methods
    are answered here, as the API answers them elsewhere (OPTIONS a 204, the rest a 405, both
    with Allow): inside a mount the application's handler would not see the full path."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        if scope["type"] != "http" or method in ("GET", "HEAD"):
            await super().__call__(scope, receive, send)
            return
        response: Response = Response(status_code=204, headers=ALLOW)
        if method != "OPTIONS":
            body = error_body([], "Method Not Allowed", "method_not_allowed")
            response = JSONResponse(body, status_code=405, headers=ALLOW)
        await response(scope, receive, send)

    def file_response(self, full_path: Any, stat_result: Any, scope: Scope,
                      status_code: int = 200) -> Response:  # fmt: skip
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        media_type = MEDIA_TYPES.get(Path(str(full_path)).suffix)
        if media_type:
            response.headers["Content-Type"] = media_type
        return response


def install(app: FastAPI) -> None:
    @app.get(PREFIX, include_in_schema=False)
    def dashboard() -> RedirectResponse:
        return RedirectResponse("ui/", status_code=307)

    # The more specific mount first: uPlot's files under /ui/vendor/uplot.
    app.mount(f"{PREFIX}/vendor/uplot", Revalidated(directory=UPLOT_DIR), name="ui-uplot")
    app.mount(PREFIX, Revalidated(directory=UI_DIR, html=True), name="ui")
