"""The live stream of a job as Server-Sent Events: one `epoch` event per committed epoch row
(id = epoch), `progress` events while an epoch runs, then one `status` event when the job ends.
Rows are read from the database, so the stream works the same with the in-process executor and
with Celery workers on other machines, and a client reconnecting with Last-Event-ID resumes
after that epoch.

A resumed attempt rewrites the epochs after its checkpoint: the stream sends a rewritten row
again (its `attempt` says which attempt wrote it; its id is its epoch), so a client keyed by
epoch ends with the values `GET /v1/jobs/{id}` shows. It tracks the newest attempt it has sent
and the last epoch it has sent from that attempt; a row of a newer attempt, or of that attempt
past that epoch, is sent even if its epoch was sent before.

A `progress` event (no id, so Last-Event-ID still names the last epoch) is what Keras's
progress bar shows, sent at most every `events_progress_s` seconds while an epoch trains:

    event: progress
    data: {"epoch": 3, "batch": 17, "steps": 40, "epochs": 100, "attempt": 1,
           "logs": {"loss": 0.41, "accuracy": 0.83}}

`epoch` and `batch` are 0-based (as Keras callbacks count), `steps` is the number of batches per
epoch, `logs` the running averages over the epoch so far (null where not finite). Progress is
live only (app/runtime/progress.py): it is not stored and not replayed on reconnect, and one for an
epoch whose row that attempt has already written (as far as the stream has sent) is dropped.

The stream is async: it holds no worker thread while it waits, each database poll runs in a
thread briefly. The streams of one job in a process share their polls (_SharedReads): many
listeners on one job cost about one database read per half `events_poll_s`, not one each. A
stream lasts at most `events_max_s`, and ends early when the process shuts down
(app.api.shutdown): its last event is then `reconnect`, and clients reconnect with Last-Event-ID
(as EventSource does by itself), so a server can always drain its connections."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from app.core.errors import NotFound
from app.db.models import EpochLogRow, JobStatus
from app.db.scope import Scope
from app.db.session import unit_of_work
from app.jobs import repository as repo
from app.runtime.context import AppContext
from app.runtime.progress import Subscription

PAGE = 500


def _event(kind: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, allow_nan=False)}\n\n"


@dataclass
class _Snapshot:
    status: JobStatus
    summary: dict[str, Any]
    rows: list[EpochLogRow]
    more: bool = False  # a page was full: read again at once
    _chunks: list[str] | None = None

    def chunks(self) -> list[str]:
        """Each row's `epoch` event, formatted once for every stream this snapshot serves."""
        if self._chunks is None:
            self._chunks = [
                _event("epoch", {"epoch": r.epoch, "logs": r.logs, "attempt": r.attempt}, r.epoch)
                for r in self.rows
            ]
        return self._chunks


@dataclass
class _Cursor:
    """What the stream has sent: up to epoch `after`, and from the newest attempt it has sent
    (`attempt`) up to epoch `rewritten`."""

    after: int
    attempt: int = 0
    rewritten: int = -1

    def wants(self, epoch: int, attempt: int) -> bool:
        return (epoch > self.after or attempt > self.attempt
                or (attempt == self.attempt and epoch > self.rewritten))  # fmt: skip

    def sent(self, epoch: int, attempt: int) -> None:
        self.after = max(self.after, epoch)
        if attempt > self.attempt:
            self.attempt, self.rewritten = attempt, epoch
        elif attempt == self.attempt:
            self.rewritten = max(self.rewritten, epoch)


def _start(ctx: AppContext, job_id: uuid.UUID, after: int) -> _Cursor:
    """A cursor for a client that has the epochs up to `after` (Last-Event-ID): the rows it
    got are taken to be the newest ones up to there."""
    with unit_of_work(ctx.sessions) as session:
        seen = repo.last_attempt_logged(session, job_id=job_id, upto=after)
    return _Cursor(after) if seen is None else _Cursor(after, *seen)


def _read(ctx: AppContext, scope: Scope, job_id: uuid.UUID, cursor: _Cursor) -> _Snapshot | None:
    with unit_of_work(ctx.sessions) as session:
        # Status first, rows second: if the job had ended, every row is already visible.
        job = repo.get_job(session, job_id=job_id, scope=scope)
        if job is None:
            return None
        error = None if job.error_type is None else {"type": job.error_type,
                                                     "message": job.error_message}  # fmt: skip
        summary = {"status": job.status, "epochs_done": job.epochs_done, "error": error}
        rows = list(repo.epoch_logs(session, job_id=job_id, after=cursor.after, limit=PAGE))
        more = len(rows) == PAGE
        if job.attempt > cursor.attempt or cursor.rewritten < cursor.after:
            # A newer attempt may be rewriting epochs already sent (rare, after a redelivery:
            # otherwise this query never runs, and the one above is an index range).
            rewrites = list(repo.rewritten_epochs(
                session, job_id=job_id, upto=cursor.after, attempt=cursor.attempt,
                after=cursor.rewritten, limit=PAGE,
            ))  # fmt: skip
            more = more or len(rewrites) == PAGE
            rows = rewrites + rows
        return _Snapshot(JobStatus(job.status), summary, rows, more)


class _SharedReads:
    """The streams of one job in this process share their database polls: a poll for a job,
    scope and cursor that another stream made less than `ttl` seconds ago (or is making) is
    answered with that stream's snapshot. Streams of one job that have sent the same rows have
    the same cursor, so N listeners cost about one read per `ttl`, not N per poll (a snapshot
    is consistent as read; a stream served one sees it up to `ttl` later than its own poll
    would have)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[Any, ...], _Shared] = {}
        self._stores = 0

    def get(self, key: tuple[Any, ...], ttl: float,
            read: Callable[[], _Snapshot | None]) -> _Snapshot | None:  # fmt: skip
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            mine = entry is None or (entry.done.is_set() and now - entry.at >= ttl)
            if mine:
                entry = self._entries[key] = _Shared(now)
                self._stores += 1
                if self._stores % 256 == 0:  # forget what nobody asked for lately
                    self._entries = {k: e for k, e in self._entries.items()
                                     if not e.done.is_set() or now - e.at < ttl}  # fmt: skip
        assert entry is not None  # for mypy
        if not mine:
            entry.done.wait()
            return entry.snapshot if entry.ok else read()  # its read failed: try our own
        try:
            entry.snapshot = read()
            entry.ok = True
            return entry.snapshot
        finally:
            if not entry.ok:
                with self._lock:
                    if self._entries.get(key) is entry:
                        del self._entries[key]
            entry.done.set()

    def fresh(self, key: tuple[Any, ...], ttl: float) -> _Shared | None:
        """A read of `key` that succeeded and began less than `ttl` seconds ago, if any: the
        stream's loop takes its snapshot without a hop to a thread."""
        entry = self._entries.get(key)
        if entry is not None and entry.ok and time.monotonic() - entry.at < ttl:
            return entry
        return None


@dataclass
class _Shared:
    at: float  # when its read began
    snapshot: _Snapshot | None = None
    ok: bool = False
    done: threading.Event = field(default_factory=threading.Event)


_shared = _SharedReads()


def _key(ctx: AppContext, scope: Scope, job_id: uuid.UUID, cursor: _Cursor) -> tuple[Any, ...]:
    return (id(ctx.engine), job_id, scope, cursor.after, cursor.attempt, cursor.rewritten)


def _poll(ctx: AppContext, scope: Scope, job_id: uuid.UUID, cursor: _Cursor) -> _Snapshot | None:
    """A stream's look for new rows, shared with the job's other streams (_SharedReads)."""
    key, ttl = _key(ctx, scope, job_id, cursor), ctx.settings.events_poll_s / 2
    return _shared.get(key, ttl, lambda: _read(ctx, scope, job_id, cursor))


def finished_with_nothing_after(
    ctx: AppContext, scope: Scope, job_id: uuid.UUID, after: int
) -> bool:
    """True for a reconnect to an ended job that has nothing more to send (answered 204, which
    tells EventSource to stop reconnecting). Raises NotFound for an unknown job."""
    snapshot = _read(ctx, scope, job_id, _start(ctx, job_id, after))
    if snapshot is None:
        raise NotFound(f"job {job_id} does not exist", loc=["path", "job_id"])
    return snapshot.status.is_terminal and not snapshot.rows


async def stream(
    ctx: AppContext, *, scope: Scope, job_id: uuid.UUID, after: int
) -> AsyncIterator[str]:
    async with ctx.progress.subscribe(job_id) as progress:
        async for chunk in _stream(ctx, scope, job_id, after, progress):
            yield chunk


async def _stream(
    ctx: AppContext, scope: Scope, job_id: uuid.UUID, after: int, progress: Subscription
) -> AsyncIterator[str]:
    settings = ctx.settings
    started = last_sent = time.monotonic()
    yield "retry: 1000\n\n"
    cursor = await anyio.to_thread.run_sync(_start, ctx, job_id, after)
    while not ctx.stopping.is_set() and time.monotonic() - started < settings.events_max_s:
        shared = _shared.fresh(_key(ctx, scope, job_id, cursor), settings.events_poll_s / 2)
        if shared is not None:
            snapshot = shared.snapshot
        else:
            snapshot = await anyio.to_thread.run_sync(_poll, ctx, scope, job_id, cursor)
        if snapshot is None:
            return
        for row, chunk in zip(snapshot.rows, snapshot.chunks(), strict=True):
            yield chunk
            cursor.sent(row.epoch, row.attempt)
            last_sent = time.monotonic()
        if snapshot.more:
            continue
        if snapshot.status.is_terminal:
            yield _event("status", snapshot.summary)
            return
        if time.monotonic() - last_sent >= settings.events_keepalive_s:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        # Wait for the next database poll on the progress channel instead of sleeping.
        until = time.monotonic() + settings.events_poll_s
        while (left := until - time.monotonic()) > 0:
            event = await progress.get(left)
            if event is None:
                break
            if cursor.wants(int(event.get("epoch", -1)), int(event.get("attempt", 0))):
                yield _event("progress", event)
                last_sent = time.monotonic()
    # The server is shutting down, or the stream has lasted EVENTS_MAX_S: the client reconnects
    # (EventSource does by itself) with Last-Event-ID and resumes after the last epoch sent.
    reason = "shutdown" if ctx.stopping.is_set() else "max_duration"
    yield _event("reconnect", {"reason": reason, "after": cursor.after})
