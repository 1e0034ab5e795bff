"""Requests refused before any route runs: a Content-Type the route does not take on a request
that changes state (415), and text that is not text in the path, the query string or a header
the app reads (422 naming it). A pure ASGI middleware: nothing of the body is read.

Content types. A browser sends `text/plain`, `multipart/form-data` and
`application/x-www-form-urlencoded` bodies to any origin without asking first (no CORS
preflight), and a body with no Content-Type at all (a Blob of no type) likewise; so the first
three are refused on every POST, PUT, PATCH and DELETE, and a body must name a type that its
route accepts. A route accepts the types its OpenAPI requestBody declares (FastAPI declares
application/json for a JSON body; the upload routes declare theirs in `openapi_extra`), so the
document and the check cannot disagree. One exception, marked `x-untyped-body` in the document:
the Open Inference Protocol's infer takes a body without a type, as its own clients send it
(Triton's); that body is read as JSON, or framed by `Inference-Header-Content-Length`. Without
a key such a request could come from any page, but it only computes an answer that the page
cannot read; with keys, the Authorization header needs a preflight anyway.

Text. NUL, and percent-encoded bytes that are not UTF-8 (a lone surrogate such as %ED%A0%80),
would otherwise arrive as NUL or silently as U+FFFD, and be stored or matched as such."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.responses import JSONResponse
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import error_body

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SIMPLE_TYPES = frozenset({"text/plain", "multipart/form-data", "application/x-www-form-urlencoded"})
JSON = "application/json"
# The request headers the app reads, authentication included.
READ_HEADERS = frozenset({
    b"content-type", b"accept", b"authorization", b"idempotency-key", b"last-event-id",
    b"x-request-id", b"inference-header-content-length",
})  # fmt: skip
# An operation marked so in the OpenAPI document takes a body without a Content-Type as JSON:
# the Open Inference Protocol's infer, whose own clients send none.
UNTYPED_BODY = "x-untyped-body"

# (path regex, method -> the content types its requestBody declares; empty: it takes none)
Operations = list[tuple[re.Pattern[str], dict[str, frozenset[str]]]]


def operations(openapi: Mapping[str, Any]) -> Operations:
    """Every documented operation's accepted content types, in the document's (the router's)
    order."""
    table: Operations = []
    for path, item in openapi.get("paths", {}).items():
        regex, _, _ = compile_path(path)
        methods = {
            method.upper(): frozenset(op.get("requestBody", {}).get("content", {}))
            | ({""} if op.get(UNTYPED_BODY) else set())
            for method, op in item.items()
            if method.upper() in STATE_CHANGING and isinstance(op, dict)
        }
        table.append((regex, methods))
    return table


def media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def text_problem(data: bytes) -> str | None:
    """Why `data` (bytes, percent-decoded) is not storable text, or None."""
    if b"\x00" in data:
        return "must not contain NUL characters"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "must be UTF-8 text; bytes that are not (such as a lone surrogate) were found"
    return None


def _shown(data: bytes) -> str:
    # A name to put in `loc`: never NUL or undecodable bytes themselves.
    return data.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def _route_path(scope: Scope, path: str) -> str:
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class RequestGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._operations: Operations | None = None

    def _table(self, scope: Scope) -> Operations:
        # Built from the OpenAPI document on the first request, once every route is included.
        if self._operations is None:
            self._operations = operations(scope["app"].openapi())
        return self._operations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._text_refusal(scope) or self._type_refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _text_refusal(self, scope: Scope) -> JSONResponse | None:
        for loc, data in self._texts(scope):
            problem = text_problem(data)
            if problem is not None:
                return JSONResponse(error_body(loc, problem, "value_error"), status_code=422)
        return None

    def _texts(self, scope: Scope) -> Iterable[tuple[list[str | int], bytes]]:
        """(loc, percent-decoded bytes) of each piece of text the request carries outside its
        body: path parameters (the whole path where no route matches), query names and values,
        and the values of READ_HEADERS."""
        raw = scope.get("raw_path")
        if raw is None:
            raw = str(scope.get("path", "")).encode("utf-8", "surrogatepass")
        raw_path = _route_path(scope, raw.decode("latin-1"))
        yield from self._path_texts(scope, raw_path)
        for pair in scope.get("query_string", b"").split(b"&"):
            name, _, value = pair.partition(b"=")
            name_bytes = unquote_to_bytes(name.replace(b"+", b" "))
            loc: list[str | int] = ["query", _shown(name_bytes)]
            yield loc, name_bytes
            yield loc, unquote_to_bytes(value.replace(b"+", b" "))
        for header, value in scope.get("headers", []):
            if header in READ_HEADERS:
                yield ["header", header.decode("latin-1")], value

    def _path_texts(self, scope: Scope, raw_path: str) -> Iterable[tuple[list[str | int], bytes]]:
        whole = unquote_to_bytes(raw_path)
        if text_problem(whole) is None:
            return
        for regex, _ in self._table(scope):
            match = regex.match(raw_path)
            if match is not None:
                for name, value in match.groupdict().items():
                    yield ["path", name], unquote_to_bytes(value)
        yield ["path"], whole

    def _type_refusal(self, scope: Scope) -> JSONResponse | None:
        method = scope.get("method", "")
        if method not in STATE_CHANGING:
            return None
        headers = dict(scope.get("headers", []))
        media = media_type(headers.get(b"content-type", b"").decode("latin-1"))
        has_body = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
        accepted = self._accepted(scope, method)
        if media in SIMPLE_TYPES or (accepted and has_body and media not in accepted):
            shown = sorted(accepted - {""} or {JSON})
            if media:
                msg = f"Content-Type {media} is not accepted here; send one of: {', '.join(shown)}"
            else:
                msg = f"a body needs a Content-Type; send one of: {', '.join(shown)}"
            body = error_body(["header", "content-type"], msg, "unsupported_media_type")
            return JSONResponse(body, status_code=415)
        return None

    def _accepted(self, scope: Scope, method: str) -> frozenset[str]:
        """The content types the operation at this path and method declares; empty when it
        takes no body or no documented operation matches (the router answers 404 or 405)."""
        path = _route_path(scope, scope.get("path", ""))
        for regex, methods in self._table(scope):
            if method in methods and regex.match(path):
                return methods[method]
        return frozenset()
