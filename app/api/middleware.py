"""A request-size limit enforced while the body streams in (Content-Length or chunked): one
limit for every route, and larger ones for the routes that take uploads (a dataset)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    def __init__(
        self, app: ASGIApp, max_bytes: int, uploads: Mapping[tuple[str, str], int] | None = None
    ) -> None:
        """`uploads`: (method, path) -> the limit of that route instead of `max_bytes`."""
        self.app, self.max_bytes = app, max_bytes
        self.uploads = dict(uploads or {})

    def _message(self, limit: int) -> str:
        return f"request body exceeds {limit} bytes"

    async def _reject(self, send: Send, limit: int) -> None:
        body = json.dumps({"detail": [{
            "loc": ["body"], "type": "payload_too_large", "msg": self._message(limit),
        }]}).encode()  # fmt: skip
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.uploads.get((scope.get("method", ""), scope.get("path", "")), self.max_bytes)
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._reject(send, limit)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # FastAPI turns this into a 400 whose cause it is; the API's handler
                    # answers 413 for it.
                    raise BodyTooLarge(self._message(limit))
            return message

        await self.app(scope, limited, send)


class BodyTooLarge(Exception):
    pass
