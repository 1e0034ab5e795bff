"""The sender: a thread of the API process that takes due deliveries from the outbox and POSTs
them, signed, with a short timeout and no redirects followed. A failed try is retried after
WEBHOOK_RETRY_BASE_S, doubling each time up to WEBHOOK_RETRY_MAX_S; after WEBHOOK_MAX_ATTEMPTS
tries the delivery is given up (`failed`). Safe in several processes at once: a delivery is
claimed by one sender (SKIP LOCKED on Postgres), and never sent inside a request."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import httpx

from app.core.config import Settings
from app.db.base import utcnow
from app.db.session import unit_of_work
from app.runtime.context import AppContext
from app.webhooks import repository as repo
from app.webhooks.signing import signature
from app.webhooks.urls import UrlRefused, target

log = logging.getLogger(__name__)
BATCH = 10
USER_AGENT = "fitapi-webhooks/1"


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def retry_delay(settings: Settings, attempt: int) -> float:
    """Seconds to wait after failed try `attempt` (1-based)."""
    return min(settings.webhook_retry_max_s, settings.webhook_retry_base_s * 2 ** (attempt - 1))


def post(settings: Settings, claimed: repo.Claimed) -> tuple[int | None, str | None]:
    """One try: (the receiver's status, None) when it answered 2xx, else (status or None, why
    it failed). The reason is for the client's eyes: it names no server internals."""
    try:
        where = target(claimed.url, allow_private=settings.webhooks_may_reach_private)
    except UrlRefused as exc:
        return None, str(exc)[:500]
    body = body_of(claimed.payload)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Webhook-Id": str(claimed.delivery_id),
        "Webhook-Timestamp": str(timestamp),
        "Webhook-Signature": signature(claimed.secret, timestamp, body),
    }
    # Connect to the address that was checked, keeping the URL's name for Host and TLS.
    url = httpx.URL(claimed.url)
    headers["Host"] = url.netloc.decode("ascii")
    extensions = {"sni_hostname": where.host} if url.scheme == "https" else {}
    request = httpx.Request("POST", url.copy_with(host=where.address), headers=headers,
                            content=body, extensions=extensions)  # fmt: skip
    timeout = settings.webhook_timeout_s
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            response = client.send(request, stream=True)
            response.close()  # the body is not read: a receiver cannot make us download
    except httpx.TimeoutException:
        return None, f"no answer within {timeout:g} s"
    except httpx.ConnectError:
        return None, "could not connect"
    except httpx.HTTPError as exc:
        return None, f"the request failed ({type(exc).__name__})"
    if 200 <= response.status_code < 300:
        return response.status_code, None
    if response.is_redirect:
        return response.status_code, f"HTTP {response.status_code}: redirects are not followed"
    return response.status_code, f"HTTP {response.status_code}"


def _outcome(
    settings: Settings, claimed: repo.Claimed, code: int | None, error: str | None, now: datetime
) -> dict[str, Any]:
    if error is None:
        return {"status": repo.DELIVERED, "next_attempt_at": None, "delivered_at": now}
    if claimed.attempt >= settings.webhook_max_attempts:
        return {"status": repo.FAILED, "next_attempt_at": None, "delivered_at": None}
    wait = retry_delay(settings, claimed.attempt)
    return {"status": repo.PENDING, "next_attempt_at": now + timedelta(seconds=wait),
            "delivered_at": None}  # fmt: skip


def send_due(ctx: AppContext) -> int:
    """One pass: send what is due, a batch at a time. Returns how many tries were made."""
    settings = ctx.settings
    # A batch is sent one after the other: no other sender takes it until every try of it
    # could have timed out; one that stops mid-batch leaves the rest to be taken again then.
    lease_s = BATCH * (settings.webhook_timeout_s + 1) + 5
    tries = 0
    while not ctx.stopping.is_set():
        with unit_of_work(ctx.sessions) as session:
            if not repo.any_due(session, now=utcnow()):
                break
        with unit_of_work(ctx.sessions) as session:
            claimed = repo.claim_due(session, now=utcnow(), lease_s=lease_s, limit=BATCH)
        if not claimed:
            break
        for item in claimed:
            code, error = post(settings, item)
            now = utcnow()
            if error is not None:
                log.info("webhook delivery %s, try %d, failed: %s", item.delivery_id,
                         item.attempt, error)  # fmt: skip
            with unit_of_work(ctx.sessions) as session:
                repo.record_try(session, delivery_id=item.delivery_id, attempt=item.attempt,
                                status_code=code, error=error,
                                **_outcome(settings, item, code, error, now))  # fmt: skip
            tries += 1
    return tries


PRUNE_EVERY_S = 3600.0


def prune(ctx: AppContext) -> int:
    """Forget settled deliveries older than WEBHOOK_KEEP_S, so the table does not grow without
    bound; logs how many went."""
    before = utcnow() - timedelta(seconds=ctx.settings.webhook_keep_s)
    with unit_of_work(ctx.sessions) as session:
        gone = repo.prune_deliveries(session, before=before)
    if gone:
        log.info("pruned %d settled webhook deliveries older than %s", gone, before.isoformat())
    return gone


def start_sender(ctx: AppContext) -> threading.Thread:
    def loop() -> None:
        pruned_at = float("-inf")
        while not ctx.stopping.wait(ctx.settings.webhook_poll_s):
            try:
                send_due(ctx)
                if time.monotonic() - pruned_at >= PRUNE_EVERY_S:
                    pruned_at = time.monotonic()
                    prune(ctx)
            except Exception:
                log.exception("webhook sender pass failed")

    thread = threading.Thread(target=loop, name="fitapi-webhooks", daemon=True)
    thread.start()
    return thread
