"""Errors in the standard predict protocols' shape. TensorFlow Serving's and the Open Inference
Protocol's clients read a refusal's message from `error`; this middleware gives every error
response on their paths (the routes' own, and the refusals of authentication, the body limit
and the request guard) an `error` of "loc: msg" beside the API's `detail`, and answers an
invalid request with the 400 those protocols use instead of a 422 (the 500 and 503 of the
outermost handler add `error` themselves). A pure ASGI middleware that holds only error
responses, which are small."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def speaks_protocol(path: str, root_path: str = "") -> bool:
    """TensorFlow Serving's predict, and everything under /v2 (`path` within `root_path`, the
    prefix a proxy mounts the API under)."""
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    return path == "/v2" or path.startswith("/v2/") or (
        path.startswith("/v1/models/") and path.endswith(":predict")
    )  # fmt: skip


def with_error(body: Any) -> Any:
    """`body` (the API's `{"detail": [...]}`) with `error`: the first item's place and message."""
    if not isinstance(body, dict) or "error" in body:
        return body
    detail = body.get("detail")
    first = detail[0] if isinstance(detail, list) and detail else None
    if isinstance(first, dict):
        loc = ".".join(str(part) for part in first.get("loc") or [])
        msg = str(first.get("msg", ""))
        return {"error": f"{loc}: {msg}" if loc else msg, **body}
    return {"error": detail if isinstance(detail, str) else "error", **body}


class ProtocolErrors:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not speaks_protocol(
            scope.get("path", ""), scope.get("root_path", "")
        ):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def rewritten(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status, body = start["status"], b"".join(chunks)
            try:
                body = json.dumps(with_error(json.loads(body))).encode()
                status = 400 if status == 422 else status
            except ValueError:
                pass  # not JSON: passed on as it is
            kept = start.get("headers", [])
            headers = [(k, v) for k, v in kept if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewritten)
