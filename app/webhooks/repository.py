"""All SQL of the webhooks domain: webhooks (scoped to their project) and their deliveries
(claimed by senders, updated with each try's outcome). The outbox (app.webhooks.outbox) adds
deliveries. Functions take a session and never commit: the caller's unit of work does."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from app.db.models import WebhookDeliveryRow, WebhookRow
from app.db.scope import Scope

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class Claimed:
    """A delivery taken by one sender, with what sending it needs."""

    delivery_id: uuid.UUID
    attempt: int
    url: str
    secret: str
    payload: dict[str, Any]


def add_webhook(session: Session, *, row: WebhookRow) -> WebhookRow:
    session.add(row)
    session.flush()
    return row


def count_webhooks(session: Session, *, project_id: uuid.UUID) -> int:
    return session.scalar(
        select(func.count()).select_from(WebhookRow).where(WebhookRow.project_id == project_id)
    ) or 0  # fmt: skip


def get_webhook(session: Session, *, webhook_id: uuid.UUID, scope: Scope) -> WebhookRow | None:
    return session.scalars(
        select(WebhookRow).where(WebhookRow.id == webhook_id, scope.where(WebhookRow.project_id))
    ).first()


def list_webhooks(
    session: Session, *, scope: Scope, limit: int, offset: int
) -> tuple[Sequence[WebhookRow], int]:
    visible = scope.where(WebhookRow.project_id)
    rows = session.scalars(
        select(WebhookRow).where(visible)
        .order_by(WebhookRow.created_at.desc(), WebhookRow.id).limit(limit).offset(offset)
    ).all()  # fmt: skip
    total = session.scalar(select(func.count()).select_from(WebhookRow).where(visible)) or 0
    return rows, total


def delete_webhook(session: Session, *, webhook_id: uuid.UUID) -> None:
    # Deliveries go with it (ON DELETE CASCADE; SQLite without foreign keys: here).
    session.execute(delete(WebhookDeliveryRow).where(WebhookDeliveryRow.webhook_id == webhook_id))
    session.execute(delete(WebhookRow).where(WebhookRow.id == webhook_id))


def list_deliveries(
    session: Session, *, webhook_id: uuid.UUID, limit: int, offset: int
) -> tuple[Sequence[WebhookDeliveryRow], int]:
    mine = WebhookDeliveryRow.webhook_id == webhook_id
    rows = session.scalars(
        select(WebhookDeliveryRow).where(mine)
        .order_by(WebhookDeliveryRow.created_at.desc(), WebhookDeliveryRow.id)
        .limit(limit).offset(offset)
    ).all()  # fmt: skip
    total = session.scalar(select(func.count()).select_from(WebhookDeliveryRow).where(mine)) or 0
    return rows, total


def get_delivery(
    session: Session, *, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDeliveryRow | None:
    return session.scalars(
        select(WebhookDeliveryRow).where(
            WebhookDeliveryRow.id == delivery_id, WebhookDeliveryRow.webhook_id == webhook_id
        )
    ).first()


def requeue(session: Session, *, delivery_id: uuid.UUID, now: datetime) -> None:
    """Send again from the start: a fresh count of tries, due now."""
    session.execute(
        update(WebhookDeliveryRow).where(WebhookDeliveryRow.id == delivery_id)
        .values(status=PENDING, attempts=0, next_attempt_at=now, delivered_at=None)
    )  # fmt: skip


def any_due(session: Session, *, now: datetime) -> bool:
    """Whether a delivery is due: a read, so an idle sender takes no write lock."""
    return session.scalar(
        select(WebhookDeliveryRow.id).where(
            WebhookDeliveryRow.status == PENDING, WebhookDeliveryRow.next_attempt_at <= now
        ).limit(1)
    ) is not None  # fmt: skip


def claim_due(session: Session, *, now: datetime, lease_s: float, limit: int) -> list[Claimed]:
    """Take up to `limit` due deliveries: on Postgres, rows other senders hold are skipped
    (SKIP LOCKED); each taken row's next try moves `lease_s` ahead, so that a sender that dies
    mid-send leaves it to be tried again then, and no other sender takes it meanwhile."""
    rows = session.execute(
        select(WebhookDeliveryRow.id, WebhookDeliveryRow.attempts, WebhookDeliveryRow.payload,
               WebhookRow.url, WebhookRow.secret)
        .join(WebhookRow, WebhookRow.id == WebhookDeliveryRow.webhook_id)
        .where(WebhookDeliveryRow.status == PENDING, WebhookDeliveryRow.next_attempt_at <= now)
        .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookDeliveryRow)
    ).all()  # fmt: skip
    if not rows:
        return []
    session.execute(
        update(WebhookDeliveryRow)
        .where(WebhookDeliveryRow.id.in_([r.id for r in rows]))
        .values(attempts=WebhookDeliveryRow.attempts + 1,
                next_attempt_at=now + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    return [Claimed(delivery_id=r.id, attempt=r.attempts + 1, url=r.url, secret=r.secret,
                    payload=r.payload) for r in rows]  # fmt: skip


def record_try(
    session: Session,
    *,
    delivery_id: uuid.UUID,
    attempt: int,
    status: str,
    status_code: int | None,
    error: str | None,
    next_attempt_at: datetime | None,
    delivered_at: datetime | None,
) -> None:
    """The outcome of try `attempt`, unless the delivery was requeued meanwhile."""
    session.execute(
        update(WebhookDeliveryRow)
        .where(WebhookDeliveryRow.id == delivery_id, WebhookDeliveryRow.attempts == attempt,
               WebhookDeliveryRow.status == PENDING)
        .values(status=status, last_status_code=status_code, last_error=error,
                next_attempt_at=next_attempt_at, delivered_at=delivered_at)
        .execution_options(synchronize_session=False)
    )  # fmt: skip


def prune_deliveries(session: Session, *, before: datetime) -> int:
    """Delete the deliveries that are settled (delivered, or given up) and older than `before`;
    how many went. Pending ones stay, whatever their age."""
    gone: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        delete(WebhookDeliveryRow)
        .where(WebhookDeliveryRow.status.in_(["delivered", "failed"]),
               WebhookDeliveryRow.created_at < before)
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    return int(gone.rowcount or 0)
