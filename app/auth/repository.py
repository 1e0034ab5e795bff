"""All SQL of the auth domain: projects, API keys and the audit log. Functions take a session
and never commit: the caller's unit of work does."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import ApiKeyRow, AuditRow, ProjectRow


# -- projects ----------------------------------------------------------------------------------
def get_project(session: Session, *, project_id: uuid.UUID) -> ProjectRow | None:
    return session.get(ProjectRow, project_id)


def get_project_by_name(session: Session, *, name: str) -> ProjectRow | None:
    return session.scalars(select(ProjectRow).where(ProjectRow.name == name)).first()


def lock_project(session: Session, *, project_id: uuid.UUID) -> ProjectRow | None:
    """The project row, locked until commit, so that quota checks of one project run one at a
    time. A write takes the lock on both databases: SQLite ignores FOR UPDATE and would let two
    transactions read the same usage, but its write lock serialises them from here on."""
    session.execute(
        update(ProjectRow).where(ProjectRow.id == project_id).values(name=ProjectRow.name)
    )
    return session.get(ProjectRow, project_id, populate_existing=True)


def add_project(session: Session, *, name: str) -> ProjectRow:
    row = ProjectRow(name=name, quotas={})
    session.add(row)
    session.flush()
    return row


def list_projects(session: Session) -> Sequence[ProjectRow]:
    return session.scalars(select(ProjectRow).order_by(ProjectRow.name)).all()


def set_quotas(session: Session, *, project_id: uuid.UUID, quotas: dict[str, int]) -> None:
    session.execute(update(ProjectRow).where(ProjectRow.id == project_id).values(quotas=quotas))


# -- keys --------------------------------------------------------------------------------------
def add_key(session: Session, *, row: ApiKeyRow) -> ApiKeyRow:
    session.add(row)
    session.flush()
    return row


def _key_where(session: Session, condition: Any) -> tuple[ApiKeyRow, ProjectRow] | None:
    found = session.execute(
        select(ApiKeyRow, ProjectRow)
        .join(ProjectRow, ProjectRow.id == ApiKeyRow.project_id)
        .where(condition)
    ).first()
    return (found[0], found[1]) if found is not None else None


def key_by_digest(session: Session, *, token_sha256: str) -> tuple[ApiKeyRow, ProjectRow] | None:
    return _key_where(session, ApiKeyRow.token_sha256 == token_sha256)


_ANY_KEY = select(ApiKeyRow.id).limit(1)


def any_key(conn: Connection) -> bool:
    """Whether a key was ever created (revoked ones count: revoking the last key must not open
    the server). On a plain connection with a statement built once: single-user mode asks this
    on every request."""
    return conn.execute(_ANY_KEY).first() is not None


def list_keys(
    session: Session, *, project_id: uuid.UUID | None
) -> Sequence[tuple[ApiKeyRow, ProjectRow]]:
    query = (
        select(ApiKeyRow, ProjectRow)
        .join(ProjectRow, ProjectRow.id == ApiKeyRow.project_id)
        .order_by(ApiKeyRow.created_at, ApiKeyRow.id)
    )
    if project_id is not None:
        query = query.where(ApiKeyRow.project_id == project_id)
    return [(k, p) for k, p in session.execute(query).all()]


def get_key(session: Session, *, key_id: uuid.UUID) -> tuple[ApiKeyRow, ProjectRow] | None:
    return _key_where(session, ApiKeyRow.id == key_id)


def keys_by_prefix(session: Session, *, prefix: str) -> Sequence[ApiKeyRow]:
    return session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix)).all()


def revoke_key(session: Session, *, key_id: uuid.UUID) -> None:
    session.execute(
        update(ApiKeyRow)
        .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


# -- audit -------------------------------------------------------------------------------------
def add_audit(session: Session, *, rows: list[dict[str, Any]]) -> None:
    """One INSERT for all `rows` (AuditRow's fields), without building an ORM object per row:
    the audit writer adds a row for every request that changes something."""
    if rows:
        session.execute(insert(AuditRow), rows)


def list_audit(
    session: Session,
    *,
    project_id: uuid.UUID | None,
    since: datetime | None,
    before_id: int | None,
    limit: int,
) -> Sequence[AuditRow]:
    """Newest first; `before_id` pages on (the smallest id of the previous page)."""
    query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if project_id is not None:
        query = query.where(AuditRow.project_id == project_id)
    if since is not None:
        query = query.where(AuditRow.at >= since)
    if before_id is not None:
        query = query.where(AuditRow.id < before_id)
    return session.scalars(query).all()
