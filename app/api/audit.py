"""The audit log, written as responses end: every successful change (create, update, delete,
cancel, and the POST actions such as fit or predict) and every download, with the caller's key,
role and project, the route and the resource's id. Reads of JSON are not logged.

An ASGI middleware rather than a call in each route, so that a new route cannot be missed; the
row is written after the response and apart from the request, by an `AuditWriter` thread that
puts the rows ending close together in one transaction, so the audit never fails or delays a
request (a failure to write it is logged). Reading the log first waits for the rows already
added, so a caller reads back what it did."""

from __future__ import annotations

import json
import logging
import threading
from functools import partial
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.auth import TENANT_PREFIXES, route_path
from app.auth import service
from app.auth.schemas import Principal
from app.db.base import utcnow

log = logging.getLogger(__name__)
READS = ("GET", "HEAD", "OPTIONS")
# Response types that are data, not a JSON view of a resource: a GET of one is a download.
_VIEWS = ("application/json", "text/event-stream", "text/html")
_MAX_CAPTURE = 1 << 16


class AuditWriter:
    """Writes audit rows on its own thread, several to a transaction: a row waits at most
    AUDIT_FLUSH_S for the rows that end after it, so under load a row costs a share of one
    commit, and a request's path never waits for the database to write its row. `flush` (the
    audit log's read calls it) returns once every row added before it is written; `close`
    writes what is left."""

    def __init__(self, ctx: Any, delay: float) -> None:
        self.ctx = ctx
        self.delay = delay
        self._rows: list[dict[str, Any]] = []
        self._added = self._done = 0
        self._urgent = self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="fitapi-audit", daemon=True)
        self._thread.start()

    def add(self, row: dict[str, Any]) -> None:
        """`row`: an AuditRow's fields, as `_entry` makes them."""
        with self._cond:
            self._rows.append(row)
            self._added += 1
            if len(self._rows) == 1:  # the thread may be waiting for a first row
                self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> None:
        with self._cond:
            target, self._urgent = self._added, True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._done >= target or not self._thread.is_alive(),
                                timeout)  # fmt: skip

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=30.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._rows) or self._closing)
                if not self._rows:
                    return  # closing, nothing left
                # Let the rows of requests ending meanwhile join this transaction.
                self._cond.wait_for(lambda: self._urgent or self._closing, self.delay)
                rows, self._rows, self._urgent = self._rows, [], False
            self._write(rows)
            with self._cond:
                self._done += len(rows)
                self._cond.notify_all()

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            service.record(self.ctx, rows=rows)
            return
        except Exception:
            if len(rows) == 1:
                log.exception("could not write the audit row of %s", rows[0]["route"])
                return
        # One bad row must not lose the others: each again, in its own transaction.
        for row in rows:
            self._write([row])


class AuditLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not route_path(scope).startswith(TENANT_PREFIXES):
            await self.app(scope, receive, send)
            return
        seen: dict[str, Any] = {"status": 0, "type": "", "body": b""}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                headers = dict(message.get("headers", []))
                seen["type"] = headers.get(b"content-type", b"").decode("latin-1")
            elif (
                message["type"] == "http.response.body"
                and seen["status"] in (201, 202)
                and len(seen["body"]) < _MAX_CAPTURE  # enough for the created resource's id
            ):
                seen["body"] += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, watch)
        entry = _entry(scope, seen)
        if entry is None:
            return
        writer: AuditWriter | None = getattr(scope["app"].state, "audit_writer", None)
        if writer is not None:
            writer.add(entry)
            return
        ctx = scope["app"].state.ctx  # an app run without its lifespan: write it here
        try:
            await anyio.to_thread.run_sync(partial(service.record, ctx, rows=[entry]))
        except Exception:
            log.exception("could not write the audit row of %s", entry["route"])


def _entry(scope: Scope, seen: dict[str, Any]) -> dict[str, Any] | None:
    """The fields of the AuditRow of a response that is audited; None for one that is not."""
    method, status = scope.get("method", ""), int(seen["status"])
    principal = scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal) or not 200 <= status < 300:
        return None
    download = method == "GET" and not seen["type"].startswith(_VIEWS)
    if method in READS and not download:
        return None
    route = getattr(scope.get("route"), "path", None) or route_path(scope)
    parts = [p for p in route.split("/") if p][1:]  # after "v1" (or "v2")
    params = {k: str(v) for k, v in (scope.get("path_params") or {}).items()}
    resource_type = parts[1] if parts[:1] == ["admin"] and len(parts) > 1 else parts[0]
    resource_id = next(iter(params.values()), None)
    if method == "GET":
        action = "download"
    elif method == "DELETE":
        action = "delete"
    elif method in ("PUT", "PATCH"):
        action = "update"
    elif status == 201:
        action = "create"
    else:
        last = parts[-1].rpartition(":")[2] if parts else ""  # `{model_id}:predict` too
        action = last if last and not last.startswith("{") else "run"
    if resource_id is None or status in (201, 202):
        resource_id = _created_id(seen["body"]) or resource_id
    return dict(
        at=utcnow(), project_id=principal.project_id, key_id=principal.key_id,
        key_prefix=principal.key_prefix, role=principal.role.value, action=action[:20],
        route=f"{method} {route}"[:200], resource_type=resource_type[:20],
        resource_id=resource_id[:100] if resource_id else None, status_code=status,
    )  # fmt: skip


def _created_id(body: bytes) -> str | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    found = value.get("id") if isinstance(value, dict) else None
    return str(found) if found is not None else None
