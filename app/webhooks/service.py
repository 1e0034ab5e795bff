"""Use cases of the webhooks domain: register, list, read, change and delete a project's
webhooks, list a webhook's deliveries and send one again. Sending is the sender's
(app.webhooks.sender), never a request's."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from app.auth.repository import lock_project
from app.core.errors import InvalidInput, NotFound, QuotaExceeded
from app.db.base import utcnow
from app.db.models import WebhookDeliveryRow, WebhookRow
from app.db.scope import Scope
from app.db.session import unit_of_work
from app.runtime.context import AppContext
from app.runtime.jsonsafe import check_storable
from app.webhooks import repository as repo
from app.webhooks.schemas import WebhookCreate, WebhookUpdate
from app.webhooks.signing import new_secret
from app.webhooks.urls import UrlRefused, check_host


def _check_url(ctx: AppContext, url: str) -> None:
    try:
        check_host(url, allow_private=ctx.settings.webhooks_may_reach_private)
    except UrlRefused as exc:
        raise InvalidInput(str(exc), loc=["body", "url"]) from None


def _webhook(session: Session, *, scope: Scope, webhook_id: uuid.UUID) -> WebhookRow:
    row = repo.get_webhook(session, webhook_id=webhook_id, scope=scope)
    if row is None:
        raise NotFound(f"webhook {webhook_id} does not exist", loc=["path", "webhook_id"])
    return row


def create_webhook(ctx: AppContext, *, scope: Scope, body: WebhookCreate) -> WebhookRow:
    check_storable(body.description, ["body", "description"])
    _check_url(ctx, body.url)
    limit = ctx.settings.webhook_max_per_project
    with unit_of_work(ctx.sessions) as session:
        # The project lock makes two registrations of one project count one after the other.
        lock_project(session, project_id=scope.home)
        used = repo.count_webhooks(session, project_id=scope.home)
        if used + 1 > limit:
            raise QuotaExceeded(quota="webhooks", limit=limit, used=used)
        row = repo.add_webhook(session, row=WebhookRow(
            project_id=scope.home, url=body.url, events=list(body.events),
            secret=body.secret or new_secret(), active=body.active, description=body.description,
        ))  # fmt: skip
    return row


def get_webhook(ctx: AppContext, *, scope: Scope, webhook_id: uuid.UUID) -> WebhookRow:
    with unit_of_work(ctx.sessions) as session:
        return _webhook(session, scope=scope, webhook_id=webhook_id)


def list_webhooks(
    ctx: AppContext, *, scope: Scope, limit: int, offset: int
) -> tuple[Sequence[WebhookRow], int]:
    with unit_of_work(ctx.sessions) as session:
        return repo.list_webhooks(session, scope=scope, limit=limit, offset=offset)


def update_webhook(
    ctx: AppContext, *, scope: Scope, webhook_id: uuid.UUID, body: WebhookUpdate
) -> WebhookRow:
    check_storable(body.description, ["body", "description"])
    if body.url is not None:
        _check_url(ctx, body.url)
    with unit_of_work(ctx.sessions) as session:
        row = _webhook(session, scope=scope, webhook_id=webhook_id)
        for field in body.model_fields_set:
            value = getattr(body, field)
            if value is None and field != "description":
                raise InvalidInput(f"{field} cannot be null", loc=["body", field])
            setattr(row, field, list(value) if field == "events" else value)
        row.updated_at = utcnow()
        session.flush()
    return row


def delete_webhook(ctx: AppContext, *, scope: Scope, webhook_id: uuid.UUID) -> None:
    """The webhook and its deliveries, sent or not."""
    with unit_of_work(ctx.sessions) as session:
        _webhook(session, scope=scope, webhook_id=webhook_id)
        repo.delete_webhook(session, webhook_id=webhook_id)


def list_deliveries(
    ctx: AppContext, *, scope: Scope, webhook_id: uuid.UUID, limit: int, offset: int
) -> tuple[Sequence[WebhookDeliveryRow], int]:
    with unit_of_work(ctx.sessions) as session:
        _webhook(session, scope=scope, webhook_id=webhook_id)
        return repo.list_deliveries(session, webhook_id=webhook_id, limit=limit, offset=offset)


def redeliver(
    ctx: AppContext, *, scope: Scope, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDeliveryRow:
    """Send a delivery again, with a fresh count of tries; the same id and body, so a
    receiver that already has it can tell."""
    with unit_of_work(ctx.sessions) as session:
        _webhook(session, scope=scope, webhook_id=webhook_id)
        if repo.get_delivery(session, webhook_id=webhook_id, delivery_id=delivery_id) is None:
            raise NotFound(f"delivery {delivery_id} does not exist", loc=["path", "delivery_id"])
        repo.requeue(session, delivery_id=delivery_id, now=utcnow())
        row = repo.get_delivery(session, webhook_id=webhook_id, delivery_id=delivery_id)
        assert row is not None
        session.refresh(row)
        return row
