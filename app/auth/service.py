"""Use cases of the auth domain: authenticate a request, create, list and revoke keys, read and
set projects' quotas, record and read the audit log."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth import repository as repo
from app.auth.quotas import limits
from app.auth.schemas import (
    QUOTAS,
    KeyCreated,
    KeyOut,
    Principal,
    ProjectOut,
    QuotaUpdate,
    UsageOut,
)
from app.auth.tokens import SCHEME, digest, new_token
from app.core.errors import InvalidInput, NotFound, Unauthorized
from app.db.models import (
    DEFAULT_PROJECT_ID,
    DEFAULT_PROJECT_NAME,
    ApiKeyRow,
    AuditRow,
    ProjectRow,
    Role,
)
from app.db.session import unit_of_work
from app.db.usage import project_usage
from app.runtime.context import AppContext

log = logging.getLogger(__name__)

# The caller of the single-user mode: an implicit admin of the default project.
SINGLE_USER = Principal(
    key_id=None,
    key_prefix=None,
    role=Role.admin,
    project_id=DEFAULT_PROJECT_ID,
    project_name=DEFAULT_PROJECT_NAME,
)
BEARER = 'Bearer realm="fitapi"'


# Bumped by every change this process makes to keys or quotas: principals checked before it
# are checked again (AuthMode's cache).
_changes = [0]


def _changed() -> None:
    _changes[0] += 1


class AuthMode:
    """Whether requests need a key (AUTH_REQUIRED, or once a key exists), and the principals
    of the keys checked in the last AUTH_CACHE_S seconds, by their token's digest: a request
    reads its key from the database at most once per key in that time (single-user, whether a
    key exists yet). A change made through this process (`_changed`) drops them at once.
    Authentication never turns off again in a running process."""

    SIZE = 4096  # keys kept at most; past it, the oldest go

    def __init__(self, required: bool, ttl_s: float = 0.0) -> None:
        self._on = threading.Event()
        if required:
            self._on.set()
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[float, int, Principal]] = {}
        self._off_until = (0.0, -1)  # (monotonic deadline, change count) of a "no key" read

    def enabled(self, ctx: AppContext) -> bool:
        if self._on.is_set():
            return True
        if self._known_off():
            return False
        seen = _changes[0]
        with ctx.engine.connect() as conn:
            if repo.any_key(conn):
                self._on.set()
                log.info("an API key exists: authentication is on")
        if not self._on.is_set() and self.ttl_s > 0:
            self._off_until = (time.monotonic() + self.ttl_s, seen)
        return self._on.is_set()

    def _known_off(self) -> bool:
        until, seen = self._off_until
        return seen == _changes[0] and time.monotonic() < until

    def cached(self, ctx: AppContext, token: str | None) -> Principal | None:
        """The principal of `token` if known without reading the database; else None."""
        if not self._on.is_set():
            return _single_user(ctx) if self._known_off() else None
        if not token or self.ttl_s <= 0:
            return None
        with self._lock:
            found = self._keys.get(digest(token))
        if found is None:
            return None
        until, seen, principal = found
        return principal if seen == _changes[0] and time.monotonic() < until else None

    def keep(self, token: str, principal: Principal, seen: int) -> None:
        """Trust `principal`, read after change `seen`, for AUTH_CACHE_S."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._keys) >= self.SIZE:
                self._keys.pop(next(iter(self._keys)))
            self._keys[digest(token)] = (time.monotonic() + self.ttl_s, seen, principal)


def _single_user(ctx: AppContext) -> Principal:
    return replace(SINGLE_USER, requests_per_s=ctx.settings.quota_requests_per_s)


def authenticate(ctx: AppContext, *, mode: AuthMode, token: str | None) -> Principal:
    cached = mode.cached(ctx, token)
    if cached is not None:
        return cached
    seen = _changes[0]  # before the reads: a change meanwhile leaves nothing cached
    if not mode.enabled(ctx):
        return _single_user(ctx)
    if not token:
        raise Unauthorized(
            "an API key is required: send `Authorization: Bearer <key>`",
            loc=["header", "Authorization"],
            headers={"WWW-Authenticate": BEARER},
        )
    found = None
    if token.startswith(f"{SCHEME}_") and len(token) <= 200:
        with unit_of_work(ctx.sessions) as session:
            found = repo.key_by_digest(session, token_sha256=digest(token))
    if found is None or found[0].revoked_at is not None:
        raise Unauthorized(
            "the API key is unknown or revoked", loc=["header", "Authorization"],
            headers={"WWW-Authenticate": f'{BEARER}, error="invalid_token"'},
        )  # fmt: skip
    key, project = found
    principal = Principal(key_id=key.id, key_prefix=key.prefix, role=Role(key.role),
                          project_id=project.id, project_name=project.name,
                          requests_per_s=limits(ctx.settings, project).requests_per_s)  # fmt: skip
    mode.keep(token, principal, seen)
    return principal


# -- keys --------------------------------------------------------------------------------------
def create_key(ctx: AppContext, *, project: str, role: Role, name: str | None) -> KeyCreated:
    """A new key of `project` (created if needed); the token is in the answer only."""
    try:
        return _create_key(ctx, project=project, role=role, name=name)
    except IntegrityError:  # another request created the project meanwhile: it exists now
        return _create_key(ctx, project=project, role=role, name=name)


def _create_key(ctx: AppContext, *, project: str, role: Role, name: str | None) -> KeyCreated:
    token, prefix = new_token()
    with unit_of_work(ctx.sessions) as session:
        row = repo.get_project_by_name(session, name=project)
        if row is None:
            row = repo.add_project(session, name=project)
        key = repo.add_key(session, row=ApiKeyRow(
            project_id=row.id, role=role.value, prefix=prefix, token_sha256=digest(token),
            name=name,
        ))  # fmt: skip
        out = KeyCreated(**KeyOut.of(key, row).model_dump(), token=token)
    _changed()
    log.info("API key %s created (project %s, role %s)", prefix, project, role.value)
    return out


def _project_id(session: Session, name: str | None) -> uuid.UUID | None:
    """The id of the project a listing is filtered by (None: every project)."""
    if name is None:
        return None
    row = repo.get_project_by_name(session, name=name)
    if row is None:
        raise NotFound("no such project", loc=["query", "project"])
    return row.id


def list_keys(ctx: AppContext, *, project: str | None) -> list[KeyOut]:
    with unit_of_work(ctx.sessions) as session:
        project_id = _project_id(session, project)
        return [KeyOut.of(k, p) for k, p in repo.list_keys(session, project_id=project_id)]


def revoke_key(ctx: AppContext, *, key: str) -> KeyOut:
    """Revoke by id or by visible prefix (the prefix must name exactly one key)."""
    with unit_of_work(ctx.sessions) as session:
        key_id = _key_id(session, key)
        repo.revoke_key(session, key_id=key_id)
        found = repo.get_key(session, key_id=key_id)
        assert found is not None
        session.flush()
        out = KeyOut.of(*found)
    _changed()
    log.info("API key %s revoked", out.prefix)
    return out


def _key_id(session: Session, key: str) -> uuid.UUID:
    try:
        key_id = uuid.UUID(key)
    except ValueError:
        rows = repo.keys_by_prefix(session, prefix=key)
        if len(rows) != 1:
            raise NotFound("no key has this id or prefix", loc=["path", "key"]) from None
        return rows[0].id
    if repo.get_key(session, key_id=key_id) is None:
        raise NotFound("no key has this id or prefix", loc=["path", "key"])
    return key_id


# -- projects ----------------------------------------------------------------------------------
def list_projects(ctx: AppContext) -> list[ProjectOut]:
    with unit_of_work(ctx.sessions) as session:
        return [_project_out(ctx, session, row) for row in repo.list_projects(session)]


def _project_out(ctx: AppContext, session: Session, row: ProjectRow) -> ProjectOut:
    usage = project_usage(session, project_id=row.id)
    return ProjectOut(
        id=row.id, name=row.name, created_at=row.created_at, quotas=limits(ctx.settings, row),
        overrides=dict(row.quotas), usage=UsageOut(**usage.as_dict()),
    )  # fmt: skip


def set_quotas(ctx: AppContext, *, project: str, body: QuotaUpdate) -> ProjectOut:
    with unit_of_work(ctx.sessions) as session:
        row = repo.get_project_by_name(session, name=project)
        if row is None:
            raise NotFound("no such project", loc=["path", "project"])
        own = dict(row.quotas)
        for name in sorted(body.model_fields_set):
            if name not in QUOTAS:
                raise InvalidInput("unknown quota", loc=["body", name])
            value = getattr(body, name)
            if value is None:
                own.pop(name, None)
            else:
                own[name] = value
        repo.set_quotas(session, project_id=row.id, quotas=own)
        session.flush()
        session.refresh(row)
        out = _project_out(ctx, session, row)
    _changed()
    return out


# -- audit -------------------------------------------------------------------------------------
def record(ctx: AppContext, *, rows: list[dict[str, Any]]) -> None:
    """Audit rows (each an AuditRow's fields, the same fields in each), in order, in one
    transaction."""
    with unit_of_work(ctx.sessions) as session:
        repo.add_audit(session, rows=rows)


def audit_page(
    ctx: AppContext,
    *,
    project: str | None,
    since: datetime | None,
    before_id: int | None,
    limit: int,
) -> Sequence[AuditRow]:
    if since is not None:
        try:
            since = since.astimezone(UTC)
        except OverflowError:
            raise InvalidInput("out of range", loc=["query", "since"]) from None
    with unit_of_work(ctx.sessions) as session:
        project_id = _project_id(session, project)
        return repo.list_audit(session, project_id=project_id, since=since,
                               before_id=before_id, limit=limit)  # fmt: skip
