"""The predict lane: the threads that answer synchronous predicts, in place of a thread of the
shared pool per request.

Concurrent predicts on pool threads contend for the interpreter lock and each wake the event
loop on their own; here a lane thread takes the oldest waiting request and every other one
waiting for the same model (a pass), reads that model's state once for them
(`shared_state_reads`: they had all arrived before the read began, so it sees every change
committed before any of them), and runs them one by one as they came, each exactly as it would
run alone, handing each answer to the event loop as soon as it is ready. PREDICT_THREADS
threads share the queue, so that a long predict holds up at most the requests for its own
model that its thread took with it. A request whose caller has gone is skipped; whatever fails
in a pass fails its own requests, never the thread.

Micro-batching (PREDICT_BATCH_WAIT_S > 0; off by default): a pass starts once the oldest
waiting request that can be merged has waited that long, and requests of one key (the model,
the caller's scope, the checkpoint, the batch size and the form of `x`) run as one predict over
their rows in arrival order, each answered from its own rows. The rows of a merged predict may
differ from a lone one's in the last bits (a matrix product over more rows may sum in another
order), as the rows of one Keras predict call over a batch do; merged requests that would not
run at once (past PREDICT_SYNC_MAX_ROWS or SYNC_MAX_COST), or that fail together, run alone."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import anyio
import numpy as np

from app.core.errors import Unavailable
from app.models.service import shared_state_reads

log = logging.getLogger(__name__)
T = TypeVar("T")
Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Mergeable:
    """What lets the lane run a request together with others of the same `key`: its rows `x`
    (an array, or a list of rows), `run` over all the merged rows (None: they may not run
    together), and `answer`, the request's answer from its own rows of each output."""

    key: Hashable
    x: np.ndarray | list[Any]
    run: Callable[[np.ndarray | list[Any]], Outputs | None]
    answer: Callable[[Outputs], Any]


@dataclass
class _Task:
    fn: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    merge: Mergeable | None = None
    group: Hashable = None  # the model: a pass takes the waiting requests of one
    at: float = field(default_factory=time.monotonic)


class PredictLane:
    def __init__(self, threads: int, batch_wait_s: float = 0.0) -> None:
        self.batch_wait_s = batch_wait_s
        self._waiting: deque[_Task] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"fitapi-predict-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    async def run(
        self, fn: Callable[[], T], merge: Mergeable | None = None, group: Hashable = None
    ) -> T:
        """`fn()` on a lane thread; its result, or its exception raised here. `group` (the
        model) lets it run in one pass with the others of its group; with `merge` (and
        micro-batching on) it may run merged with others instead."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self.batch_wait_s <= 0:
            merge = None
        if group is None and merge is not None:  # what may merge runs in one pass
            group = merge.key
        with self._cond:
            if self._closing:
                raise Unavailable("the server is shutting down; try again")
            self._waiting.append(_Task(fn, future, loop, merge, group))
            self._cond.notify()
        return await future

    def close(self) -> None:
        """Answers what is waiting, then ends the threads."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=30.0)

    def _serve(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._waiting:
                        if self._closing:
                            return
                        self._cond.wait()
                        continue
                    head = self._waiting[0]
                    wait = head.at + self.batch_wait_s - time.monotonic() if head.merge else 0.0
                    if wait <= 0 or self._closing:
                        break
                    self._cond.wait(wait)  # for more requests to merge with the oldest
                tasks = self._take(head)
            try:
                self._run_pass(tasks)
            except BaseException as exc:  # the pass's requests get it; the thread goes on
                log.exception("a predict pass failed")
                for t in tasks:
                    _answer(t, False, exc)

    def _take(self, head: _Task) -> list[_Task]:
        """The oldest waiting request and those waiting for the same model (under the lock)."""
        if head.group is None:
            return [self._waiting.popleft()]
        tasks = [t for t in self._waiting if t.group == head.group]
        self._waiting = deque(t for t in self._waiting if t.group != head.group)
        return tasks

    @staticmethod
    def _run_pass(tasks: list[_Task]) -> None:
        tasks = [t for t in tasks if not t.future.cancelled()]  # gone callers (a hint: no lock)
        groups: dict[Hashable, list[_Task]] = {}
        for t in tasks:
            if t.merge is not None:
                groups.setdefault(t.merge.key, []).append(t)
        with shared_state_reads():
            answered: set[int] = set()
            for t in tasks:
                if id(t) in answered:
                    continue
                group = groups.get(t.merge.key, [t]) if t.merge is not None else [t]
                results = _run_merged(group) if len(group) > 1 else None
                if results is None:  # each alone
                    results = []
                    for member in group:
                        results.append(_call(member.fn))
                        _answer(member, *results[-1])
                        answered.add(id(member))
                    continue
                for member, (ok, value) in zip(group, results, strict=True):
                    _answer(member, ok, value)
                    answered.add(id(member))


def _call(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except BaseException as exc:  # raised again in the caller
        return False, exc


def _run_merged(group: list[_Task]) -> list[tuple[bool, Any]] | None:
    """Each member's (ok, answer) from one predict over all their rows; None when they may not
    run together (each then runs alone)."""
    merges = [t.merge for t in group if t.merge is not None]
    xs = [m.x for m in merges]
    rows = [len(x) for x in xs]
    merged: np.ndarray | list[Any]
    if all(isinstance(x, np.ndarray) for x in xs):
        merged = np.concatenate(xs)
    else:
        merged = [row for x in xs for row in x]
    try:
        outputs = merges[0].run(merged)
        if outputs is None or any(out.ndim == 0 or len(out) != sum(rows)
                                  for out in outputs.values()):  # fmt: skip
            return None
    except Exception:  # each alone, so that each gets its own error
        log.debug("merged predict failed; its requests run alone", exc_info=True)
        return None
    results, start = [], 0
    for merge, count in zip(merges, rows, strict=True):
        own = {name: out[start : start + count] for name, out in outputs.items()}
        results.append(_call(partial(merge.answer, own)))
        start += count
    return results


def _answer(task: _Task, ok: bool, value: Any) -> None:
    """Hands `task` its answer on its event loop."""
    try:
        task.loop.call_soon_threadsafe(_deliver, task.future, ok, value)
    except RuntimeError:  # the loop has closed: nobody waits for this answer
        log.debug("a predict answer dropped: its event loop has closed")


def _deliver(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # cancelled: the caller has gone
        return
    if ok:
        future.set_result(value)
    elif isinstance(value, StopIteration):  # a future cannot raise it (asyncio's own rule)
        future.set_exception(RuntimeError(f"StopIteration: {value}"))
    else:
        future.set_exception(value)


async def run_predict(
    state: Any, fn: Callable[[], T], merge: Mergeable | None = None, group: Hashable = None
) -> T:
    """`fn()` on the app's predict lane (in a pass with `group`'s others, or merged: see
    Mergeable); on a pool thread where the app runs without its lifespan (no lane)."""
    lane: PredictLane | None = getattr(state, "predict_lane", None)
    if lane is None:
        return await anyio.to_thread.run_sync(fn)
    return await lane.run(fn, merge, group)
