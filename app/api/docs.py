"""The documentation pages, /docs (Swagger UI) and /redoc (ReDoc), and the static files they
load: served by this server from app/api/static, so the pages work with no internet access.

The vendored bundles come from the swagger-ui-dist and redoc npm packages (static/vendor/README.md
names versions and checksums). The pages run no inline script: Swagger UI starts from
static/docs/swagger-init.js, ReDoc from its `<redoc spec-url>` element, so the pages'
Content-Security-Policy (app.api.security_headers.DOCS_CSP) allows scripts from this origin only.

Every asset URL carries the file's content hash (`?v=`): a response to that URL may be cached for
a year, as the next version has another URL; any other request for a static file is revalidated
(`no-cache`, with an ETag)."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from html import escape
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


@lru_cache(maxsize=64)
def _digest(relative: str) -> str:
    return hashlib.sha256((STATIC_DIR / relative).read_bytes()).hexdigest()[:16]


class Assets(StaticFiles):
    """StaticFiles whose responses say how long they may be kept (see the module docstring)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        query = scope.get("query_string", b"").decode("latin-1").split("&")
        versioned = f"v={_digest(path)}" in query
        response.headers["Cache-Control"] = IMMUTABLE if versioned else REVALIDATE
        return response


def _asset(request: Request, relative: str) -> str:
    root = request.scope.get("root_path", "").rstrip("/")
    return escape(f"{root}{STATIC_URL}/{relative}?v={_digest(relative)}")


def _openapi_url(request: Request) -> str:
    root = request.scope.get("root_path", "").rstrip("/")
    return escape(f"{root}{request.app.openapi_url}")


def _page(request: Request, title: str, head: str, body: str) -> HTMLResponse:
    return HTMLResponse(f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="icon" type="image/png" href="{_asset(request, "vendor/swagger-ui/favicon-32x32.png")}">
<link rel="stylesheet" href="{_asset(request, "docs/docs.css")}">
{head}
</head>
<body>
{body}
</body>
</html>
""")


def install(app: FastAPI) -> None:
    """Serve /docs, /redoc and /static; create the app with docs_url=None and redoc_url=None."""
    app.mount(STATIC_URL, Assets(directory=STATIC_DIR), name="static")

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        head = (
            f'<link rel="stylesheet" href="{_asset(request, "vendor/swagger-ui/swagger-ui.css")}">'
        )
        body = (
            f'<div id="swagger-ui" data-openapi-url="{_openapi_url(request)}"></div>\n'
            f'<script src="{_asset(request, "vendor/swagger-ui/swagger-ui-bundle.js")}"></script>\n'
            f'<script src="{_asset(request, "docs/swagger-init.js")}"></script>'
        )
        return _page(request, f"{app.title} - Swagger UI", head, body)

    @app.get(REDOC_URL, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        body = (
            f'<redoc spec-url="{_openapi_url(request)}"></redoc>\n'
            f'<script src="{_asset(request, "vendor/redoc/redoc.standalone.js")}"></script>'
        )
        return _page(request, f"{app.title} - ReDoc", "", body)
