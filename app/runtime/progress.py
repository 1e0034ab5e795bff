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


class _RedisFeed:
    """One Redis subscription to a job's channel, shared by that job's streams in this process
    (on one event loop): each message is read and decoded once, then put in every
    subscriber's bounded queue. A lost connection is subscribed again a second later (progress
    published meanwhile is missed: it is live only)."""

    def __init__(self, url: str, job_id: uuid.UUID) -> None:
        self.url, self.job_id = url, job_id
        self.subs: set[_LocalSubscription] = set()
        self.client: Any = None
        self.pubsub: Any = None
        self.pump: asyncio.Task[None] | None = None
        self.started: asyncio.Future[None] | None = None

    async def start(self) -> None:
        import redis.asyncio

        self.client = redis.asyncio.Redis.from_url(self.url)
        self.pubsub = self.client.pubsub()
        await self.pubsub.subscribe(channel(self.job_id))
        self.pump = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        warned = False
        while True:
            try:
                message = await self.pubsub.get_message(ignore_subscribe_messages=True,
                                                        timeout=1.0)  # fmt: skip
            except Exception as exc:
                if not warned:
                    log.warning("progress of job %s: subscription lost (%s); subscribing "
                                "again", self.job_id, exc)  # fmt: skip
                    warned = True
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await self.pubsub.aclose()
                    self.pubsub = self.client.pubsub()
                    await self.pubsub.subscribe(channel(self.job_id))
                continue
            if message is not None and message.get("type") == "message":
                event: dict[str, Any] = json.loads(message["data"])
                for sub in list(self.subs):
                    sub._put(event)

    async def close(self) -> None:
        for task in (self.started, self.pump):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.pubsub is not None:
            with contextlib.suppress(Exception):
                await self.pubsub.unsubscribe()
            with contextlib.suppress(Exception):
                await self.pubsub.aclose()
        if self.client is not None:
            await self.client.aclose()


class RedisBus:
    """Redis pub/sub: one shared connection publishes; the streams of one job in this process
    share one subscription (_RedisFeed), so a job's progress costs one Redis connection and
    one decode per event in an API process, whatever the number of its listeners."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._feeds: dict[tuple[asyncio.AbstractEventLoop, uuid.UUID], _RedisFeed] = {}

    def publish(self, job_id: uuid.UUID, event: dict[str, Any]) -> None:
        self._client.publish(channel(job_id), json.dumps(event, allow_nan=False))

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: uuid.UUID) -> AsyncIterator[Subscription]:
        loop = asyncio.get_running_loop()
        key = (loop, job_id)
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = _RedisFeed(self.url, job_id)
            feed.started = asyncio.ensure_future(feed.start())
        sub = _LocalSubscription(loop)
        feed.subs.add(sub)
        try:
            # Subscribed before this returns (as a first subscriber waits for its SUBSCRIBE),
            # so nothing published after it is missed.
            assert feed.started is not None
            await asyncio.shield(feed.started)
            yield sub
        finally:
            feed.subs.discard(sub)
            if not feed.subs and self._feeds.get(key) is feed:
                del self._feeds[key]
                await feed.close()

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
