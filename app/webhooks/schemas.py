"""Request and response bodies of the webhooks routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from pydantic import AfterValidator, BaseModel, Field

from app.db.models import WebhookDeliveryRow, WebhookRow
from app.runtime.schemas import Strict, strict_with_example, with_example
from app.webhooks.outbox import STATE_EVENTS
from app.webhooks.urls import URL_MAX, check_url

Event = Literal["job.queued", "job.running", "job.succeeded", "job.failed", "job.cancelled",
                "job.epoch"]  # fmt: skip
SECRET_MIN, SECRET_MAX = 16, 200


def _url(value: str) -> str:
    check_url(value)  # its ValueError becomes a 422 naming the field
    return value


def _events(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError("each event may be listed once")
    return value


def _secret(value: str) -> str:
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError("a secret is printable ASCII without spaces")
    return value


Url = Annotated[str, Field(min_length=1, max_length=URL_MAX), AfterValidator(_url)]
Events = Annotated[list[Event], Field(min_length=1, max_length=6), AfterValidator(_events)]
Secret = Annotated[str, Field(min_length=SECRET_MIN, max_length=SECRET_MAX),
                   AfterValidator(_secret)]  # fmt: skip


class WebhookCreate(Strict):
    model_config = strict_with_example(
        {"url": "https://hooks.example.com/fitapi", "events": ["job.succeeded", "job.failed"]}
    )

    url: Url = Field(description="http or https; no user or password in it")
    events: Events = Field(
        default_factory=lambda: [cast(Event, e) for e in STATE_EVENTS],
        description="What to receive: job.queued, job.running, job.succeeded, job.failed, "
        "job.cancelled (the default is these five) and job.epoch (every epoch's end)",
    )  # fmt: skip
    secret: Secret | None = Field(
        default=None, description="The signing key; left out, the server makes one. Shown "
        "only in this response.",
    )  # fmt: skip
    active: bool = True
    description: str | None = Field(default=None, max_length=200)


class WebhookUpdate(Strict):
    model_config = strict_with_example({"active": False})

    url: Url | None = None
    events: Events | None = None
    active: bool | None = None
    description: str | None = Field(default=None, max_length=200)


WEBHOOK_EXAMPLE: dict[str, Any] = {
    "id": "a4180523-d638-4cb6-a064-4be66266a6d8", "url": "https://hooks.example.com/fitapi",
    "events": ["job.succeeded", "job.failed"], "active": True, "description": None,
    "created_at": "2026-12-07T14:35:16.836677Z", "updated_at": "2026-12-07T14:35:16.836677Z",
}  # fmt: skip
DELIVERY_EXAMPLE: dict[str, Any] = {
    "id": "0b6f4d0e-8f7a-4a53-9c1f-6f7b0e2d9a10", "webhook_id": WEBHOOK_EXAMPLE["id"],
    "event": "job.succeeded", "job_id": "c4609ebc-eb79-4c9c-a959-be9e773d1c57",
    "status": "delivered", "attempts": 1, "next_attempt_at": None, "last_status_code": 200,
    "last_error": None, "created_at": "2026-12-07T14:40:02.113204Z",
    "delivered_at": "2026-12-07T14:40:02.390511Z",
    "payload": {"id": "0b6f4d0e-8f7a-4a53-9c1f-6f7b0e2d9a10", "type": "job.succeeded",
                "created_at": "2026-12-07T14:40:02.113204+00:00",
                "webhook_id": "a4180523-d638-4cb6-a064-4be66266a6d8",
                "data": {"job": {"id": "c4609ebc-eb79-4c9c-a959-be9e773d1c57",
                                 "kind": "fit", "status": "succeeded", "epochs": 300,
                                 "epochs_done": 300, "error": None}}},
}  # fmt: skip


class WebhookOut(BaseModel):
    model_config = with_example(WEBHOOK_EXAMPLE)
    id: uuid.UUID
    url: str
    events: list[str]
    active: bool
    description: str | None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    model_config = with_example(
        {**WEBHOOK_EXAMPLE, "secret": "whsec_n8EdMExi-PbWJQREIWQfyrkKkp8j-CV43LtO_6DMkCw"}
    )
    secret: str = Field(description="The signing key: shown once, in this response only")


class WebhookList(BaseModel):
    model_config = with_example({"items": [WEBHOOK_EXAMPLE], "total": 1, "limit": 20,
                                 "offset": 0})  # fmt: skip
    items: list[WebhookOut]
    total: int
    limit: int
    offset: int


class DeliveryOut(BaseModel):
    model_config = with_example(DELIVERY_EXAMPLE)
    id: uuid.UUID = Field(description="Sent as the Webhook-Id header and the payload's `id`")
    webhook_id: uuid.UUID
    event: str
    job_id: uuid.UUID | None
    status: str = Field(description="pending, delivered or failed (given up)")
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None = Field(description="The receiver's last HTTP status")
    last_error: str | None = Field(description="Why the last try failed")
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="The JSON body sent")


class DeliveryList(BaseModel):
    model_config = with_example({"items": [DELIVERY_EXAMPLE], "total": 1, "limit": 20,
                                 "offset": 0})  # fmt: skip
    items: list[DeliveryOut]
    total: int
    limit: int
    offset: int


def webhook_out(row: WebhookRow) -> WebhookOut:
    return WebhookOut(id=row.id, url=row.url, events=list(row.events), active=row.active,
                      description=row.description, created_at=row.created_at,
                      updated_at=row.updated_at)  # fmt: skip


def webhook_created(row: WebhookRow) -> WebhookCreated:
    return WebhookCreated(**webhook_out(row).model_dump(), secret=row.secret)


def delivery_out(row: WebhookDeliveryRow) -> DeliveryOut:
    return DeliveryOut(
        id=row.id, webhook_id=row.webhook_id, event=row.event, job_id=row.job_id,
        status=row.status, attempts=row.attempts, next_attempt_at=row.next_attempt_at,
        last_status_code=row.last_status_code, last_error=row.last_error,
        created_at=row.created_at, delivered_at=row.delivered_at, payload=row.payload,
    )  # fmt: skip
