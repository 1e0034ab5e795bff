"""Requests per second per project, as a token bucket in the API process: a burst of
QUOTA_BURST requests, refilled at the project's requests_per_s. With several API processes each
holds its own buckets, so a project's rate across them is at most their number times the
quota."""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, burst: int) -> None:
        self.burst = burst
        self._buckets: dict[uuid.UUID, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, project_id: uuid.UUID, rate: float) -> float:
        """0 when the request may go on; else the seconds until it may (the Retry-After)."""
        if rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(project_id)
            if bucket is None:
                bucket = self._buckets[project_id] = _Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
