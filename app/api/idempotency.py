"""Idempotent retries: a POST under /v1 that carries an `Idempotency-Key` header runs once per
key and project; a retry with the same key, by the same caller, gets the first response again.

A pure ASGI middleware, inside authentication (the key belongs to the caller's project) and the
body limit, outside the audit log (a replay creates nothing, so it is not audited again). The
body is hashed as it streams to the route, never held: a dataset upload of gigabytes costs a
SHA-256 and no memory. The first request takes the key (a row in progress, renewed while it
runs), and its response is stored before its last byte is sent, so a client that has the
response will find it stored. Kept: 2xx responses and the 4xx a retry would get again (400,
404, 413, 422), when the route read the whole body and the response is not an event stream.
Such a response that is over IDEMPOTENCY_MAX_RESPONSE_BYTES, or the success of a route that
shows a secret (`reveals_secret`: a token must not sit in the table), settles the key without
its response: a retry is a 409 `idempotency_response_not_kept` and never runs again. Anything
else (401, 403, 409, 429, a 5xx, a crash) frees the key, so a retry runs again.

A retry is replayed only when it is the same request from the same caller (its API key; the
single-user mode's implicit admin is one caller): the same method, path and query, Content-Type
and Accept, and a body of the same SHA-256 (its body is read, hashed and dropped first). Another
request or caller with the key is a 409 `idempotency_key_reused`; a retry while the first still
runs is a 409 `idempotency_key_in_use` with Retry-After: 1."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

import anyio
from fastapi import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.auth import route_path
from app.api.errors import error_body
from app.api.middleware import BodyTooLarge
from app.auth import idempotency as keys
from app.auth.schemas import Principal

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
LOC: list[str | int] = ["header", HEADER]
MAX_KEY = 255
# Printable ASCII; a server drops a header value's outer spaces, so none are allowed there.
_KEY = re.compile(r"[!-~]([ -~]*[!-~])?")
PREFIX = "/v1/"
# Failures a retry of the same request gets again; every 2xx is kept too.
KEPT_ERRORS = frozenset({400, 404, 413, 422})
KEPT_HEADERS = frozenset({
    b"content-type", b"content-disposition", b"location", b"etag", b"cache-control",
})  # fmt: skip
EVENT_STREAM = "text/event-stream"
# The flag, in the request's state, of a route whose success shows a secret (reveals_secret).
SECRET = "reveals_secret"
# Renewing and settling a held key run on threads of their own. On the default pool (40 threads,
# shared with every sync route) a saturated server could hold a renewal back past
# IDEMPOTENCY_IN_PROGRESS_S: the key would count as abandoned and a retry would run the request
# a second time.
KEY_THREADS = 8


def reveals_secret(request: Request) -> None:
    """A route's dependency: its successful response shows a secret once (an API key's token, a
    webhook's signing secret), so it is never stored for a replay."""
    setattr(request.state, SECRET, True)


def _key(scope: Scope) -> tuple[bool, str | None]:
    """(whether the header is there, the key when it is valid)."""
    values = [value for name, value in scope.get("headers", []) if name == b"idempotency-key"]
    if not values:
        return False, None
    text = values[0].decode("latin-1")
    if len(values) > 1 or len(text) > MAX_KEY or not _KEY.fullmatch(text):
        return True, None
    return True, text


def _target(scope: Scope) -> str:
    query: bytes = scope.get("query_string", b"")
    path = route_path(scope)
    return f"{path}?{query.decode('latin-1')}" if query else path


def _fingerprint(scope: Scope, body_sha256: str) -> str:
    """The request a key was used with: method, path and query, Content-Type, Accept (a retry
    asking for another form of the answer is another request) and the body's SHA-256."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])

    def header(name: bytes, absent: str) -> str:
        values = [value.decode("latin-1") for key, value in headers if key == name]
        return ", ".join(values) if values else absent

    parts = [scope["method"], _target(scope), header(b"content-type", ""),
             header(b"accept", "*/*"), body_sha256]  # fmt: skip
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _no_body(scope: Scope) -> bool:
    headers = dict(scope.get("headers", []))
    return headers.get(b"content-length", b"0") == b"0" and b"transfer-encoding" not in headers


def _refusal(status: int, msg: str, kind: str, **headers: str) -> JSONResponse:
    return JSONResponse(error_body(LOC, msg, kind), status_code=status, headers=headers or None)


def _reused() -> JSONResponse:
    msg = (
        "this Idempotency-Key was used with a different request (method, path, body, "
        "Content-Type or Accept) or by another API key; send a new key for a new request"
    )
    return _refusal(409, msg, "idempotency_key_reused")


def _not_kept(status: int) -> JSONResponse:
    ended = "succeeded" if 200 <= status < 300 else "failed"
    msg = (f"the first request with this Idempotency-Key {ended} (status {status}); its response "
           "was not kept (it showed a secret, or was too large) and cannot be shown again. Send "
           "a new key to run a new request")  # fmt: skip
    return _refusal(409, msg, "idempotency_response_not_kept")


class _BodyHash:
    """The SHA-256 of a request body as it passes through, and whether it passed whole."""

    def __init__(self, scope: Scope) -> None:
        self.sha = hashlib.sha256()
        self.complete = _no_body(scope)

    def add(self, message: Message) -> None:
        if message["type"] == "http.request":
            self.sha.update(message.get("body", b""))
            self.complete = not message.get("more_body", False)

    @property
    def digest(self) -> str:
        return self.sha.hexdigest()


class Idempotency:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.limiter: anyio.CapacityLimiter | None = None  # made in the event loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get("state", {}).get("principal")
        applies = (
            scope["type"] == "http" and scope.get("method") == "POST"
            and route_path(scope).startswith(PREFIX) and isinstance(principal, Principal)
        )  # fmt: skip
        present, key = _key(scope) if applies else (False, None)
        if not present:
            await self.app(scope, receive, send)
            return
        if key is None:
            msg = f"must be 1 to {MAX_KEY} printable ASCII characters, sent once"
            await _refusal(422, msg, "value_error")(scope, receive, send)
            return
        assert isinstance(principal, Principal)
        ctx = scope["app"].state.ctx
        ident: dict[str, Any] = {"project_id": principal.project_id, "key": key}
        method, target = scope["method"], _target(scope)
        found = await anyio.to_thread.run_sync(
            lambda: keys.claim(ctx, key_id=principal.key_id, method=method, path=target, **ident)
        )
        if isinstance(found, keys.InUse):
            msg = "a request with this Idempotency-Key is still running; retry when it has ended"
            refusal = _refusal(409, msg, "idempotency_key_in_use", **{"Retry-After": "1"})
            await refusal(scope, receive, send)
        elif isinstance(found, keys.Stored):
            await self._replay(scope, receive, send, found, principal)
        else:
            self.limiter = self.limiter or anyio.CapacityLimiter(KEY_THREADS)
            call = _Call(ctx, ident | {"owner": found.owner}, scope, self.limiter)
            await call.run(self.app, scope, receive, send)

    async def _replay(
        self, scope: Scope, receive: Receive, send: Send, stored: keys.Stored, who: Principal
    ) -> None:
        if (stored.key_id, stored.method, stored.path) != (who.key_id, scope["method"],
                                                           _target(scope)):  # fmt: skip
            await _reused()(scope, receive, send)
            return
        body = _BodyHash(scope)
        try:
            while not body.complete:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # nobody to answer
                body.add(message)
        except BodyTooLarge as exc:
            refusal = JSONResponse(error_body(["body"], str(exc), "payload_too_large"), 413)
            await refusal(scope, receive, send)
            return
        first = stored.outcome
        if _fingerprint(scope, body.digest) != first.fingerprint:
            await _reused()(scope, receive, send)
            return
        if first.body is None:
            await _not_kept(first.status_code)(scope, receive, send)
            return
        headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in
                   first.headers] + [(b"content-length", str(len(first.body)).encode()),
                                     (REPLAYED.lower().encode(), b"true")]  # fmt: skip
        await send({"type": "http.response.start", "status": first.status_code,
                    "headers": headers})  # fmt: skip
        await send({"type": "http.response.body", "body": first.body})


class _Call:
    """One request that holds its key: runs the app, renews the key while it runs, then
    settles it with the response (or without it) or frees it."""

    def __init__(
        self, ctx: Any, ident: dict[str, Any], scope: Scope, limiter: anyio.CapacityLimiter
    ) -> None:
        self.ctx, self.ident, self.scope, self.limiter = ctx, ident, scope, limiter
        self.settings = ctx.settings
        self.ended = False
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.keep = False  # a status and a form that a retry is answered with
        self.withheld = False  # kept without its body: it shows a secret or is too large

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        body = _BodyHash(scope)

        async def hashed() -> Message:
            message = await receive()
            body.add(message)
            return message

        async def captured(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._start(message)
            elif message["type"] == "http.response.body":
                self._chunk(message.get("body", b""))
                if not message.get("more_body", False) and not self.ended:
                    # Stored before the last byte leaves: a client holding the whole response
                    # finds it stored when it retries.
                    await self._end(body if body.complete else None)
            await send(message)

        error: Exception | None = None
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._renew)
                try:
                    await app(scope, hashed, captured)
                except Exception as exc:  # re-raised below, outside the task group
                    error = exc
                group.cancel_scope.cancel()
        finally:
            if not self.ended:
                await self._end(None)
        if error is not None:
            raise error

    def _start(self, message: Message) -> None:
        self.status = int(message["status"])
        for name, value in message.get("headers", []):
            if name.lower() in KEPT_HEADERS:
                self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))
        media = dict(self.headers).get("content-type", "")
        success = 200 <= self.status < 300
        self.keep = (success or self.status in KEPT_ERRORS) and not media.startswith(EVENT_STREAM)
        # Set by the route (reveals_secret) before it answers; its errors show no secret.
        self.withheld = success and bool(self.scope.get("state", {}).get(SECRET))

    def _chunk(self, data: bytes) -> None:
        if not self.keep or self.withheld:
            return
        if len(self.body) + len(data) > self.settings.idempotency_max_response_bytes:
            self.withheld, self.body = True, bytearray()
        else:
            self.body += data

    async def _end(self, body: _BodyHash | None) -> None:
        """Settles the key with the response when it is kept and the whole request body was
        hashed (`body`), without it when it is withheld; otherwise frees it. A failure is
        logged: the key then lapses on its own."""
        self.ended = True
        outcome = None
        if body is not None and self.keep:
            kept = None if self.withheld else bytes(self.body)
            outcome = keys.Outcome(fingerprint=_fingerprint(self.scope, body.digest),
                                   status_code=self.status, body=kept,
                                   headers=self.headers if kept is not None else [])  # fmt: skip

        def work() -> None:
            if outcome is not None:
                keys.settle(self.ctx, outcome=outcome, **self.ident)
            else:
                keys.release(self.ctx, **self.ident)

        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(work, limiter=self.limiter)
            except Exception:
                log.exception("could not settle an idempotency key")

    async def _renew(self) -> None:
        every = self.settings.idempotency_in_progress_s / 3
        while True:
            await anyio.sleep(every)
            try:
                await anyio.to_thread.run_sync(
                    lambda: keys.renew(self.ctx, **self.ident), limiter=self.limiter
                )
            except Exception:
                log.exception("could not renew an idempotency key")
