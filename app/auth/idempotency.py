"""Idempotency keys: all their SQL, and the short units of work the API's middleware
(app.api.idempotency) runs around a request that carries one.

A key belongs to its caller's project. `claim` takes it for a request (a new row in progress, or
one whose request died or whose time is up, taken over atomically), or says that another request
holds it, or returns the outcome stored for it. The holder renews it while it runs, then
settles it with its response (or with its status alone, when the response is not kept) or
releases it (deletes the row) so that a retry runs again. Every change after the claim names the
holder (`owner`), so a request that lost its key to a takeover cannot overwrite the new holder's
row."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.db.base import utcnow
from app.db.models import IdempotencyKeyRow, IdempotencyState
from app.db.session import unit_of_work
from app.runtime.context import AppContext

IN_PROGRESS, DONE = IdempotencyState.in_progress.value, IdempotencyState.done.value
NOT_KEPT = IdempotencyState.not_kept.value


@dataclass(frozen=True)
class Held:
    """The key is this request's: `owner` names it in every later change."""

    owner: str


@dataclass(frozen=True)
class InUse:
    """Another request holds the key and is still running."""


@dataclass(frozen=True)
class Outcome:
    """How the request that took the key ended: `fingerprint` names that request; `body` is
    None when its response is not kept (then `headers` is empty)."""

    fingerprint: str
    status_code: int
    headers: list[tuple[str, str]]
    body: bytes | None


@dataclass(frozen=True)
class Stored:
    """The outcome of the request that used the key first, and who sent it."""

    key_id: uuid.UUID | None
    method: str
    path: str
    outcome: Outcome


Claim = Held | InUse | Stored


def _pk(project_id: uuid.UUID, key: str) -> ColumnElement[bool]:
    return and_(IdempotencyKeyRow.project_id == project_id, IdempotencyKeyRow.key == key)


def _free(now: datetime) -> ColumnElement[bool]:
    """A row another request may take (or the pruner delete): settled and past its time, or in
    progress and abandoned (not renewed in time: its process died)."""
    return or_(
        IdempotencyKeyRow.state.in_((DONE, NOT_KEPT)) & (IdempotencyKeyRow.expires_at <= now),
        (IdempotencyKeyRow.state == IN_PROGRESS) & (IdempotencyKeyRow.locked_until <= now),
    )


def claim(
    ctx: AppContext, *, project_id: uuid.UUID, key: str, key_id: uuid.UUID | None, method: str,
    path: str,
) -> Claim:  # fmt: skip
    settings = ctx.settings
    now, owner = utcnow(), secrets.token_hex(16)
    values = {
        "key_id": key_id, "method": method, "path": path, "fingerprint": None,
        "state": IN_PROGRESS, "owner": owner,
        "locked_until": now + timedelta(seconds=settings.idempotency_in_progress_s),
        "status_code": None, "response_headers": None, "response_body": None, "created_at": now,
        "expires_at": now + timedelta(seconds=settings.idempotency_keep_s),
    }  # fmt: skip
    try:
        with unit_of_work(ctx.sessions) as session:
            session.add(IdempotencyKeyRow(project_id=project_id, key=key, **values))
        return Held(owner)
    except IntegrityError:
        pass  # the key exists: its row says what to do
    with unit_of_work(ctx.sessions) as session:
        # One statement, so that of two retries racing for a freed key only one takes it.
        taken = session.execute(
            update(IdempotencyKeyRow).where(_pk(project_id, key), _free(now)).values(**values)
        ).rowcount  # type: ignore[attr-defined]
        if taken:
            return Held(owner)
        row = session.scalars(select(IdempotencyKeyRow).where(_pk(project_id, key))).first()
        if row is None or row.state == IN_PROGRESS or row.status_code is None:
            return InUse()  # (a row just released: the client's next retry takes it)
        kept = row.state == DONE
        outcome = Outcome(
            fingerprint=row.fingerprint or "", status_code=row.status_code,
            headers=[(name, value) for name, value in row.response_headers or []],
            body=(row.response_body or b"") if kept else None,
        )  # fmt: skip
        return Stored(key_id=row.key_id, method=row.method, path=row.path, outcome=outcome)


def renew(ctx: AppContext, *, project_id: uuid.UUID, key: str, owner: str) -> None:
    until = utcnow() + timedelta(seconds=ctx.settings.idempotency_in_progress_s)
    with unit_of_work(ctx.sessions) as session:
        session.execute(
            update(IdempotencyKeyRow)
            .where(_pk(project_id, key), IdempotencyKeyRow.owner == owner)
            .values(locked_until=until)
        )


def settle(
    ctx: AppContext, *, project_id: uuid.UUID, key: str, owner: str, outcome: Outcome
) -> None:
    with unit_of_work(ctx.sessions) as session:
        session.execute(
            update(IdempotencyKeyRow)
            .where(_pk(project_id, key), IdempotencyKeyRow.owner == owner)
            .values(
                state=DONE if outcome.body is not None else NOT_KEPT,
                fingerprint=outcome.fingerprint,
                status_code=outcome.status_code,
                response_body=outcome.body,
                response_headers=[list(p) for p in outcome.headers] or None,
            )
        )


def release(ctx: AppContext, *, project_id: uuid.UUID, key: str, owner: str) -> None:
    with unit_of_work(ctx.sessions) as session:
        session.execute(
            delete(IdempotencyKeyRow).where(_pk(project_id, key), IdempotencyKeyRow.owner == owner)
        )


def prune(ctx: AppContext) -> int:
    """Deletes the keys past their time and the abandoned ones (the reaper calls it); returns
    how many."""
    now = utcnow()
    with unit_of_work(ctx.sessions) as session:
        result = session.execute(delete(IdempotencyKeyRow).where(_free(now)))
        gone: int = result.rowcount  # type: ignore[attr-defined]
    return gone
