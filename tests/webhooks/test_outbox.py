"""The outbox and the sender on the real Postgres: a delivery row is written in the transaction
of the job change it reports (none when it rolls back), for the project's active webhooks that
want the event; senders claim due rows without taking each other's (SKIP LOCKED); the sender
signs, retries with backoff and gives up after WEBHOOK_MAX_ATTEMPTS."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from app.auth import repository as auth_repo
from app.db.base import utcnow
from app.db.models import (
    DEFAULT_PROJECT_ID,
    JobRow,
    JobStatus,
    ModelRow,
    WebhookDeliveryRow,
    WebhookRow,
)
from app.db.scope import SYSTEM
from app.db.session import unit_of_work
from app.jobs import repository as jobs_repo
from app.models import repository as models_repo
from app.webhooks import repository as repo
from app.webhooks.sender import prune, retry_delay, send_due
from app.webhooks.signing import verify
from tests.webhooks.receiver import receiving

ALL = ["job.queued", "job.running", "job.succeeded", "job.failed", "job.cancelled", "job.epoch"]


def _hook(
    ctx: Any,
    url: str = "http://127.0.0.1:9/x",
    events: list[str] | None = None,
    project_id: uuid.UUID = DEFAULT_PROJECT_ID,
    active: bool = True,
) -> uuid.UUID:
    with unit_of_work(ctx.sessions) as s:
        row = repo.add_webhook(s, row=WebhookRow(project_id=project_id, url=url, secret="s" * 20,
                                                 events=events or ALL, active=active))  # fmt: skip
        return row.id


def _job(ctx: Any, project_id: uuid.UUID = DEFAULT_PROJECT_ID, max_attempts: int = 3) -> uuid.UUID:
    with unit_of_work(ctx.sessions) as s:
        model = models_repo.add_model(
            s, row=ModelRow(name="m", config={}, seed=1, summary={}, project_id=project_id)
        )
        return jobs_repo.add_job(s, row=JobRow(
            model_id=model.id, project_id=project_id, request={}, data_key="k", epochs=3,
            max_attempts=max_attempts)).id  # fmt: skip


def _events(ctx: Any, hook_id: uuid.UUID) -> list[tuple[str, str]]:
    with unit_of_work(ctx.sessions) as s:
        rows = s.scalars(select(WebhookDeliveryRow).where(WebhookDeliveryRow.webhook_id == hook_id)
                         .order_by(WebhookDeliveryRow.created_at)).all()  # fmt: skip
        return [(r.event, r.payload["data"]["job"]["status"]) for r in rows]


def test_each_job_change_writes_its_delivery(pg_ctx: Any) -> None:
    hook = _hook(pg_ctx)
    only_ends = _hook(pg_ctx, events=["job.succeeded", "job.failed"])
    inactive = _hook(pg_ctx, active=False)
    with unit_of_work(pg_ctx.sessions) as s:
        other = auth_repo.add_project(s, name="other").id
    elsewhere = _hook(pg_ctx, project_id=other)
    job_id = _job(pg_ctx)
    with unit_of_work(pg_ctx.sessions) as s:
        assert jobs_repo.claim_job(s, job_id=job_id, owner="w", lease_s=30) == 1
    with unit_of_work(pg_ctx.sessions) as s:
        assert jobs_repo.record_epochs(
            s, job_id=job_id, attempt=1, rows=[(0, {"loss": 1.0}), (1, {"loss": None})]
        )
    with unit_of_work(pg_ctx.sessions) as s:  # a stale attempt writes nothing, reports nothing
        assert not jobs_repo.finish_job(s, job_id=job_id, attempt=2, status=JobStatus.failed)
    with pytest.raises(RuntimeError), unit_of_work(pg_ctx.sessions) as s:
        jobs_repo.finish_job(s, job_id=job_id, attempt=1, status=JobStatus.failed)
        raise RuntimeError("rolled back: no event either")
    with unit_of_work(pg_ctx.sessions) as s:
        assert jobs_repo.finish_job(s, job_id=job_id, attempt=1, status=JobStatus.succeeded)
    assert _events(pg_ctx, hook) == [("job.queued", "queued"), ("job.running", "running"),
                                     ("job.epoch", "running"), ("job.epoch", "running"),
                                     ("job.succeeded", "succeeded")]  # fmt: skip
    assert _events(pg_ctx, only_ends) == [("job.succeeded", "succeeded")]
    assert _events(pg_ctx, inactive) == [] and _events(pg_ctx, elsewhere) == []
    with unit_of_work(pg_ctx.sessions) as s:
        epochs = s.scalars(select(WebhookDeliveryRow).where(
            WebhookDeliveryRow.webhook_id == hook, WebhookDeliveryRow.event == "job.epoch")
            .order_by(WebhookDeliveryRow.created_at)).all()  # fmt: skip
        data = [(e.payload["data"]["epoch"], e.payload["data"]["logs"]) for e in epochs]
    assert sorted(data, key=lambda d: d[0]) == [(0, {"loss": 1.0}), (1, {"loss": None})]


def test_cancels_and_the_reaper_report_their_ends(pg_ctx: Any) -> None:
    hook = _hook(pg_ctx, events=["job.cancelled", "job.failed"])
    queued = _job(pg_ctx)
    with unit_of_work(pg_ctx.sessions) as s:
        jobs_repo.request_cancel(s, job_id=queued, scope=SYSTEM)
    lost, cancelled = _job(pg_ctx, max_attempts=1), _job(pg_ctx)
    for job_id in (lost, cancelled):
        with unit_of_work(pg_ctx.sessions) as s:
            jobs_repo.claim_job(s, job_id=job_id, owner="w", lease_s=30)
    with unit_of_work(pg_ctx.sessions) as s:
        jobs_repo.request_cancel(s, job_id=cancelled, scope=SYSTEM)
        s.execute(update(JobRow).where(JobRow.id.in_([lost, cancelled]))
                  .values(lease_expires_at=utcnow() - timedelta(seconds=1)))  # fmt: skip
    with unit_of_work(pg_ctx.sessions) as s:
        jobs_repo.finish_cancelled_or_exhausted(s, now=utcnow())
    with unit_of_work(pg_ctx.sessions) as s:
        rows = s.scalars(select(WebhookDeliveryRow).where(WebhookDeliveryRow.webhook_id == hook))
        got = {(r.job_id, r.event, r.payload["data"]["job"]["status"]) for r in rows}
    assert got == {
        (queued, "job.cancelled", "cancelled"),
        (cancelled, "job.cancelled", "cancelled"),
        (lost, "job.failed", "failed"),
    }


def test_senders_do_not_take_each_others_deliveries(pg_ctx: Any) -> None:
    _hook(pg_ctx, events=["job.queued"])
    for _ in range(3):
        _job(pg_ctx)
    first = pg_ctx.sessions()
    try:
        taken = repo.claim_due(first, now=utcnow(), lease_s=60, limit=2)
        with unit_of_work(pg_ctx.sessions) as s:  # while the first still holds its rows
            more = repo.claim_due(s, now=utcnow(), lease_s=60, limit=10)
        first.commit()
    finally:
        first.close()
    assert len(taken) == 2 and len(more) == 1
    assert not {c.delivery_id for c in taken} & {c.delivery_id for c in more}
    with unit_of_work(pg_ctx.sessions) as s:  # all leased now: nothing is due
        assert repo.claim_due(s, now=utcnow(), lease_s=60, limit=10) == []


def test_the_sender_signs_retries_and_gives_up(pg_ctx: Any) -> None:
    pg_ctx.settings = pg_ctx.settings.model_copy(update={
        "webhook_allow_private": True, "webhook_max_attempts": 2, "webhook_retry_base_s": 60.0,
        "webhook_retry_max_s": 60.0})  # fmt: skip
    with receiving() as receiver:
        ok = _hook(pg_ctx, url=f"{receiver.base}/flaky/1", events=["job.queued"])
        down = _hook(pg_ctx, url=f"{receiver.base}/down", events=["job.queued"])
        job_id = _job(pg_ctx)
        assert send_due(pg_ctx) == 2  # both fail once
        with unit_of_work(pg_ctx.sessions) as s:  # due again at once
            s.execute(update(WebhookDeliveryRow).values(next_attempt_at=utcnow()))
        assert send_due(pg_ctx) == 2
        assert send_due(pg_ctx) == 0  # one delivered, one given up
    with unit_of_work(pg_ctx.sessions) as s:
        rows = {r.webhook_id: r for r in s.scalars(select(WebhookDeliveryRow))}
    assert (rows[ok].status, rows[ok].attempts, rows[ok].last_status_code) == ("delivered", 2, 200)
    assert (rows[down].status, rows[down].attempts, rows[down].last_error) == (
        "failed",
        2,
        "HTTP 500",
    )
    request = receiver.at("/flaky/1")[-1]
    assert request.json["data"]["job"]["id"] == str(job_id)
    assert verify("s" * 20, int(request.headers["Webhook-Timestamp"]), request.body,
                  request.headers["Webhook-Signature"])  # fmt: skip


def test_backoff_doubles_up_to_its_bound(pg_ctx: Any) -> None:
    settings = pg_ctx.settings.model_copy(update={"webhook_retry_base_s": 10.0,
                                                  "webhook_retry_max_s": 60.0})  # fmt: skip
    assert [retry_delay(settings, n) for n in range(1, 6)] == [10.0, 20.0, 40.0, 60.0, 60.0]


def test_settled_deliveries_are_pruned_after_their_keep_time(pg_ctx: Any) -> None:
    hook = _hook(pg_ctx, events=["job.queued"])
    ids = [_job(pg_ctx) for _ in range(4)]  # one delivery each
    old = utcnow() - timedelta(days=8)
    with unit_of_work(pg_ctx.sessions) as s:
        deliveries = s.scalars(
            select(WebhookDeliveryRow.id)
            .where(WebhookDeliveryRow.webhook_id == hook)
            .order_by(WebhookDeliveryRow.created_at)
        ).all()
        assert len(deliveries) == len(ids)
        # Old and delivered, old and given up, old and still pending, recent and delivered.
        for delivery, status, created in zip(deliveries, ["delivered", "failed", "pending",
                                                          "delivered"], [old, old, old, utcnow()],
                                             strict=True):  # fmt: skip
            s.execute(update(WebhookDeliveryRow).where(WebhookDeliveryRow.id == delivery)
                      .values(status=status, created_at=created))  # fmt: skip
    pg_ctx.settings.webhook_keep_s = 7 * 86400.0
    assert prune(pg_ctx) == 2
    with unit_of_work(pg_ctx.sessions) as s:
        left = s.scalars(select(WebhookDeliveryRow.id).where(
            WebhookDeliveryRow.webhook_id == hook)).all()  # fmt: skip
    assert set(left) == {deliveries[2], deliveries[3]}
