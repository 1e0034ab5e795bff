"""Use cases of the auth domain: authenticate a request, create, list and revoke keys, read and
set projects' quotas, record and read the audit log."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

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


class AuthMode:
    """Whether requests need a key: AUTH_REQUIRED, or once a key exists. It never turns off
    again in a running process, so only the single-user mode asks the database."""

    def __init__(self, required: bool) -> None:
        self._on = threading.Event()
        if required:
            self._on.set()

    def enabled(self, ctx: AppContext) -> bool:
        if self._on.is_set():
            return True
        with ctx.engine.connect() as conn:
            if repo.any_key(conn):
                self._on.set()
                log.info("an API key exists: authentication is on")
        return self._on.is_set()


def authenticate(ctx: AppContext, *, mode: AuthMode, token: str | None) -> Principal:
    if not mode.enabled(ctx):
        return replace(SINGLE_USER, requests_per_s=ctx.settings.quota_requests_per_s)
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
    return Principal(key_id=key.id, key_prefix=key.prefix, role=Role(key.role),
                     project_id=project.id, project_name=project.name,
                     requests_per_s=limits(ctx.settings, project).requests_per_s)  # fmt: skip


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
        return _project_out(ctx, session, row)


# -- audit -------------------------------------------------------------------------------------
def record(ctx: AppContext, *, rows: list[AuditRow]) -> None:
    """Audit rows, in order, in one transaction."""
    with unit_of_work(ctx.sessions) as session:
        for row in rows:
            repo.add_audit(session, row=row)


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
