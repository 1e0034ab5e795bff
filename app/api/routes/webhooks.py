"""Routes of /v1/webhooks: register, list, read, change and delete a project's webhooks, list a
webhook's deliveries and send one again. Deliveries are sent by the API's sender thread."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status

from app.api.auth import Caller
from app.api.deps import Ctx
from app.api.errors import ErrorOut
from app.api.idempotency import reveals_secret
from app.webhooks import service
from app.webhooks.schemas import (
    DeliveryList,
    DeliveryOut,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookUpdate,
    delivery_out,
    webhook_created,
    webhook_out,
)

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
E404: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No such webhook"}}
E422: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorOut, "description": "Invalid input; `loc` names the field"}
}
Limit = Annotated[int, Query(ge=1, le=100)]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses={**E422, 409: {"model": ErrorOut, "description": "Over WEBHOOK_MAX_PER_PROJECT"}},
    summary="Register a webhook (its secret is shown only in this response)",
    dependencies=[Depends(reveals_secret)],
)
def create_webhook(ctx: Ctx, who: Caller, body: WebhookCreate) -> WebhookCreated:
    """Job events of the caller's project are POSTed to `url`, signed with the secret
    (`Webhook-Signature: v1=<hex HMAC-SHA256 of "{Webhook-Timestamp}.{body}">`)."""
    return webhook_created(service.create_webhook(ctx, scope=who.scope, body=body))


@router.get("", response_model=WebhookList, summary="List webhooks, newest first")
def list_webhooks(ctx: Ctx, who: Caller, limit: Limit = 20, offset: Offset = 0) -> WebhookList:
    rows, total = service.list_webhooks(ctx, scope=who.scope, limit=limit, offset=offset)
    return WebhookList(items=[webhook_out(r) for r in rows], total=total, limit=limit,
                       offset=offset)  # fmt: skip


@router.get("/{webhook_id}", response_model=WebhookOut, responses=E404, summary="Read a webhook")
def get_webhook(ctx: Ctx, who: Caller, webhook_id: uuid.UUID) -> WebhookOut:
    return webhook_out(service.get_webhook(ctx, scope=who.scope, webhook_id=webhook_id))


@router.patch(
    "/{webhook_id}",
    response_model=WebhookOut,
    responses={**E404, **E422},
    summary="Change a webhook's URL, events, active flag or description",
)
def update_webhook(ctx: Ctx, who: Caller, webhook_id: uuid.UUID, body: WebhookUpdate) -> WebhookOut:
    row = service.update_webhook(ctx, scope=who.scope, webhook_id=webhook_id, body=body)
    return webhook_out(row)


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=E404,
    summary="Delete a webhook and its deliveries",
)
def delete_webhook(ctx: Ctx, who: Caller, webhook_id: uuid.UUID) -> Response:
    service.delete_webhook(ctx, scope=who.scope, webhook_id=webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{webhook_id}/deliveries",
    response_model=DeliveryList,
    responses=E404,
    summary="A webhook's deliveries, newest first",
)
def list_deliveries(
    ctx: Ctx, who: Caller, webhook_id: uuid.UUID, limit: Limit = 20, offset: Offset = 0
) -> DeliveryList:
    rows, total = service.list_deliveries(ctx, scope=who.scope, webhook_id=webhook_id,
                                          limit=limit, offset=offset)  # fmt: skip
    return DeliveryList(items=[delivery_out(r) for r in rows], total=total, limit=limit,
                        offset=offset)  # fmt: skip


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryOut,
    responses={404: {"model": ErrorOut, "description": "No such webhook or delivery"}},
    summary="Send a delivery again (same id and body, a fresh count of tries)",
)
def redeliver_delivery(
    ctx: Ctx, who: Caller, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> DeliveryOut:
    row = service.redeliver(ctx, scope=who.scope, webhook_id=webhook_id, delivery_id=delivery_id)
    return delivery_out(row)
