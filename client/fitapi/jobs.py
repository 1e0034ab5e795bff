"""client.jobs and Job: a fit (or batch predict/evaluate) on the server; its live events
(Server-Sent Events, followed across `reconnect` and dropped connections with Last-Event-ID,
reopened with backoff), and `wait()`, which prints Keras's progress lines and returns the
History."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

import httpx

from fitapi.client import RETRY_ERRORS, RETRY_STATUSES, backoff_delay
from fitapi.errors import EventStreamError, JobCancelled, JobFailed, error_from_response
from fitapi.history import History
from fitapi.progress import EpochPrinter

if TYPE_CHECKING:
    from fitapi.client import Client

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# Reopenings in a row that brought no event (a stream that ended early or broke off); a
# `reconnect` (every EVENTS_MAX_S of a long fit) is reopened at once and counts as an event.
MAX_QUIET_REOPENS = 100


@dataclass
class Event:
    """One Server-Sent Event: `epoch` (id = epoch), `progress`, `status` or `reconnect`."""

    event: str
    id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def parse_sse(
    lines: Iterator[str], on_retry: Callable[[int], None] | None = None
) -> Iterator[Event]:
    """The events of a stream's lines; `on_retry` gets each `retry:` field (milliseconds)."""
    kind, event_id, data = "message", None, list[str]()
    for line in lines:
        if line == "":
            if data:
                yield Event(kind, event_id, json.loads("\n".join(data)))
            kind, event_id, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                kind = value
            elif name == "id":
                event_id = value
            elif name == "data":
                data.append(value)
            elif name == "retry" and value.isdigit() and on_retry is not None:
                on_retry(int(value))


class Job:
    """A job: `.id`, `.kind`, `.status`, `.model_id`, `.raw` (the server's JSON)."""

    def __init__(self, client: Client, raw: dict[str, Any], *, steps: int | None = None) -> None:
        self._client = client
        self.raw = raw
        self._steps = steps  # batches per epoch, when the client knows them

    id = property(lambda self: str(self.raw["id"]))
    kind = property(lambda self: str(self.raw.get("kind", "fit")))
    status = property(lambda self: str(self.raw["status"]))
    model_id = property(lambda self: str(self.raw["model_id"]))

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def __repr__(self) -> str:
        return f"<fitapi.Job {self.id} {self.kind} {self.status}>"

    def refresh(self) -> Job:
        self.raw = self._client.get_json(f"/v1/jobs/{self.id}")
        return self

    def events(self, after: int | None = None) -> Iterator[Event]:
        """The job's events until its `status` event, from the last epoch received (as
        EventSource does, with Last-Event-ID). A `reconnect` reopens the stream at once; a
        dropped connection, a stream that ended early, a 502, 503, 504 or 429 reopen it after
        a growing wait (from the server's SSE `retry:` when it sent one), back to the first
        after each event. More errors in a row than the client's `retries` raise (ServerError,
        RateLimited, the httpx error), another error answer at once (NotFound, ...); a stream
        that keeps ending with nothing raises EventStreamError."""
        client = self._client
        last = after
        retry_ms: list[int] = []  # the server's SSE `retry:`, once sent
        quiet = 0  # reopenings since the last event
        failures = 0  # errors in a row since the last event
        while quiet < MAX_QUIET_REOPENS:
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            retry_after: str | None = None
            try:
                with client.http.stream(
                    "GET", f"/v1/jobs/{self.id}/events", headers=headers,
                    timeout=httpx.Timeout(client.timeout, read=max(client.timeout, 120.0)),
                ) as response:  # fmt: skip
                    if response.status_code == 204:  # ended, nothing after `last`
                        yield Event("status", None, self._status_summary())
                        return
                    if response.status_code >= 400:
                        response.read()
                        if response.status_code not in RETRY_STATUSES or failures >= client.retries:
                            raise error_from_response(response)
                        failures += 1
                        retry_after = response.headers.get("retry-after")
                    else:
                        reopen_now = False
                        for event in parse_sse(response.iter_lines(), retry_ms.append):
                            quiet = failures = 0
                            if event.event == "reconnect":
                                reopen_now = True
                                break
                            if event.event == "epoch" and event.id is not None:
                                last = int(event.id)
                            yield event
                            if event.event == "status":
                                return
                        if reopen_now:
                            continue
            except (*RETRY_ERRORS, httpx.ReadTimeout):
                if failures >= client.retries:
                    raise
                failures += 1
            # The server's reconnection time is the least wait; it doubles while nothing comes.
            floor = retry_ms[-1] / 1000 if retry_ms else 0.0
            time.sleep(max(floor, backoff_delay(floor or client.backoff, quiet, retry_after)))
            quiet += 1
        raise EventStreamError(self.id, quiet)

    def _status_summary(self) -> dict[str, Any]:
        self.refresh()
        return {k: self.raw.get(k) for k in ("status", "epochs_done", "error")}

    def wait(
        self, verbose: int | str = 1, timeout: float | None = None, *, out: TextIO | None = None
    ) -> History:
        """Follow the job to its end, printing Keras's progress lines (verbose 1 or 2; 0 is
        silent); the History when it succeeded, else JobFailed or JobCancelled. `timeout`
        (seconds, checked as events arrive) raises TimeoutError while the job still runs."""
        deadline = None if timeout is None else time.monotonic() + timeout
        printer = EpochPrinter(verbose, epochs=int(self.raw.get("epochs", 1)), steps=self._steps,
                               out=out)  # fmt: skip
        if self.done:
            return self._finish(printer)
        previous = _instant(self.raw.get("started_at"))
        for event in self.events():
            if event.event == "progress":
                printer.progress(event.data)
            elif event.event == "epoch":
                # The epoch's time as the server saw it: from the previous epoch's row (or the
                # job's start) to this one's.
                at = _instant(event.data.get("created_at"))
                if previous is None and at is not None:  # it was queued when the wait began
                    previous = _instant(self.refresh().raw.get("started_at"))
                seconds = (at - previous).total_seconds() if at and previous else None
                previous = at
                printer.epoch(int(event.data["epoch"]), event.data.get("logs") or {}, seconds)
            elif event.event == "status":
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} is still {self.refresh().status}")
        return self._finish(printer)

    def _finish(self, printer: EpochPrinter) -> History:
        self.refresh()
        if self.status == "failed":
            raise JobFailed(self)
        if self.status == "cancelled":
            raise JobCancelled(self)
        history = self.history
        history.params = {"verbose": printer.verbose, "epochs": int(self.raw.get("epochs", 0)),
                          "steps": printer.steps or self._steps}  # fmt: skip
        return history

    @property
    def history(self) -> History:
        """The job's History so far: the server's `history`, epochs numbered from the job's
        first (its `initial_epoch`)."""
        raw = self.raw.get("history") or {}
        epochs = sorted({int(row["epoch"]) for row in self.logs()})
        n = len(next(iter(raw.values()))) if raw else 0
        first = epochs[0] if epochs else 0
        return History({k: list(v) for k, v in raw.items()}, list(range(first, first + n)))

    def logs(self, after: int | None = None) -> list[dict[str, Any]]:
        """One row per finished epoch: {"epoch", "logs", "attempt", "created_at"}."""
        params = {} if after is None else {"after": after}
        return list(self._client.get_json(f"/v1/jobs/{self.id}/logs", params)["items"])

    def cancel(self) -> Job:
        self.raw = self._client.post_json(f"/v1/jobs/{self.id}/cancel")
        return self

    def resume(self, checkpoint: str | None = None, epochs: int | None = None) -> Job:
        """Continue this finished job as a new fit job (POST /v1/jobs/{id}/resume)."""
        body = {k: v for k, v in (("checkpoint", checkpoint), ("epochs", epochs)) if v is not None}
        return Job(self._client, self._client.post_json(f"/v1/jobs/{self.id}/resume", body),
                   steps=self._steps)  # fmt: skip

    def checkpoints(self) -> list[dict[str, Any]]:
        return list(self._client.get_json(f"/v1/jobs/{self.id}/checkpoints")["items"])


class Jobs:
    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self, job_id: str) -> Job:
        return Job(self._client, self._client.get_json(f"/v1/jobs/{job_id}"))

    def list(self, model_id: str | None = None, limit: int = 50, offset: int = 0) -> list[Job]:
        params = {"model_id": model_id, "limit": limit, "offset": offset}
        body = self._client.get_json("/v1/jobs", params)
        return [Job(self._client, raw) for raw in body["items"]]


def _instant(value: Any) -> datetime | None:
    """An ISO 8601 time from the server, or None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
