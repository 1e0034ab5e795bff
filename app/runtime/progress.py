"""Live per-batch progress of running fits: published by the worker a few times a second,
received by the job's event streams, never stored (a late subscriber misses what came before;
the epoch rows are the durable record).

With Redis (the distributed mode) progress goes through Redis pub/sub, channel
`fitapi:progress:<job id>`, so a worker on any machine reaches streams served by any API
process; without it (the embedded mode, jobs in-process) through an in-process channel.
Publishing never blocks training on a slow reader: a subscriber's backlog is bounded and its
oldest events are dropped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

log = logging.getLogger(__name__)

BACKLOG = 64  # events a slow subscriber may fall behind before the oldest are dropped


def channel(job_id: uuid.UUID) -> str:
    return f"fitapi:progress:{job_id}"


class Subscription(Protocol):
    async def get(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None when `timeout` seconds pass without one."""
        ...


class ProgressBus(Protocol):
    def publish(self, job_id: uuid.UUID, event: dict[str, Any]) -> None: ...

    def subscribe(
        self, job_id: uuid.UUID
    ) -> contextlib.AbstractAsyncContextManager[Subscription]: ...

    def close(self) -> None: ...


class _LocalSubscription:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=BACKLOG)

    def put(self, event: dict[str, Any]) -> None:
        """From any thread."""
        with contextlib.suppress(RuntimeError):  # the stream's loop has closed
            self.loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(event)

    async def get(self, timeout: float) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None


class LocalBus:
    """Publisher and subscribers in one process (worker threads, async streams)."""

    def __init__(self) -> None:
        self._subs: dict[uuid.UUID, set[_LocalSubscription]] = {}
        self._lock = threading.Lock()

    def publish(self, job_id: uuid.UUID, event: dict[str, Any]) -> None:
        with self._lock:
            subs = list(self._subs.get(job_id, ()))
        for sub in subs:
            sub.put(event)

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: uuid.UUID) -> AsyncIterator[Subscription]:
        sub = _LocalSubscription(asyncio.get_running_loop())
        with self._lock:
            self._subs.setdefault(job_id, set()).add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                subs = self._subs.get(job_id, set())
                subs.discard(sub)
                if not subs:
                    self._subs.pop(job_id, None)

    def close(self) -> None:
        pass


class _RedisSubscription:
    def __init__(self, pubsub: Any) -> None:
        self.pubsub = pubsub

    async def get(self, timeout: float) -> dict[str, Any] | None:
        until = time.monotonic() + timeout
        while (left := until - time.monotonic()) > 0:
            # A subscribe confirmation comes back as None too, before the timeout: wait on.
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if message is not None and message.get("type") == "message":
                event: dict[str, Any] = json.loads(message["data"])
                return event
            await asyncio.sleep(min(left, 0.01))  # never a busy loop
        return None


class RedisBus:
    """Redis pub/sub: one shared connection publishes; each stream subscribes on its own."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def publish(self, job_id: uuid.UUID, event: dict[str, Any]) -> None:
        self._client.publish(channel(job_id), json.dumps(event, allow_nan=False))

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: uuid.UUID) -> AsyncIterator[Subscription]:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(self.url)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(channel(job_id))
            yield _RedisSubscription(pubsub)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe()
            await pubsub.aclose()
            await client.aclose()

    def close(self) -> None:
        self._client.close()


def make_bus(redis_url: str | None) -> ProgressBus:
    return RedisBus(redis_url) if redis_url else LocalBus()


class Publisher:
    """What a running fit calls with each progress event: adds the attempt and publishes. A
    failure to publish is logged (once per fit) and never fails the fit: progress is a
    courtesy, the epoch rows are the record."""

    def __init__(self, bus: ProgressBus, job_id: uuid.UUID, attempt: int) -> None:
        self.bus, self.job_id, self.attempt = bus, job_id, attempt
        self._warned = False

    def __call__(self, event: dict[str, Any]) -> None:
        try:
            self.bus.publish(self.job_id, {**event, "attempt": self.attempt})
        except Exception as exc:
            if not self._warned:
                log.warning("job %s: progress not published (%s)", self.job_id, exc)
                self._warned = True
