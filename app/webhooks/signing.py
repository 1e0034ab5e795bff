"""Delivery signatures: `Webhook-Signature: v1=<hex>`, the HMAC-SHA256 of
`"{Webhook-Timestamp}.{body}"` keyed with the webhook's secret. The timestamp is signed too, so
a receiver that refuses old timestamps also refuses replays."""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCHEME = "v1"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def verify(secret: str, timestamp: int, body: bytes, header: str) -> bool:
    """What a receiver does (docs/operations.md, "Webhooks", shows it); kept here so the tests
    check the same."""
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, part.strip()) for part in header.split(","))
