"""The predict lane: the threads that answer synchronous predicts, in place of a thread of the
shared pool per request.

Concurrent predicts on pool threads contend for the interpreter lock and each wake the event
loop on their own; here a lane thread takes every request waiting when it gets to them (a
pass), reads each model's state once for the pass (`shared_state_reads`: they had all arrived
before the read began, so it sees every change committed before any of them), runs them one by
one as they came, each exactly as it would run alone, and hands the pass's answers to the event
loop in one call. PREDICT_THREADS threads share the queue, so that one long predict does not
hold up the others. A request whose caller has gone is skipped."""

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

    async def run(self, fn: Callable[[], T], merge: Mergeable | None = None) -> T:
        """`fn()` on a lane thread; its result, or its exception raised here. With `merge`
        (and micro-batching on) the request may run merged with others instead."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self.batch_wait_s <= 0:
            merge = None
        with self._cond:
            if self._closing:
                raise RuntimeError("the predict lane is closed")
            self._waiting.append(_Task(fn, future, loop, merge))
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
                tasks = list(self._waiting)
                self._waiting.clear()
            self._run_pass(tasks)

    @staticmethod
    def _run_pass(tasks: list[_Task]) -> None:
        answers: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
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
                    results = [_call(member.fn) for member in group]
                for member, (ok, value) in zip(group, results, strict=True):
                    answered.add(id(member))
                    answers.setdefault(member.loop, []).append((member.future, ok, value))
        for loop, done in answers.items():
            try:
                loop.call_soon_threadsafe(_deliver, done)
            except RuntimeError:  # the loop has closed: nobody waits for these answers
                log.debug("predict answers dropped: their event loop has closed")


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
    except Exception:  # each alone, so that each gets its own error
        log.debug("merged predict failed; its requests run alone", exc_info=True)
        return None
    if outputs is None:
        return None
    if any(len(out) != sum(rows) for out in outputs.values()):
        return None
    results, start = [], 0
    for merge, count in zip(merges, rows, strict=True):
        own = {name: out[start : start + count] for name, out in outputs.items()}
        results.append(_call(partial(merge.answer, own)))
        start += count
    return results


def _deliver(done: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in done:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


async def run_predict(state: Any, fn: Callable[[], T], merge: Mergeable | None = None) -> T:
    """`fn()` on the app's predict lane (or merged, see Mergeable); on a pool thread where the
    app runs without its lifespan (no lane)."""
    lane: PredictLane | None = getattr(state, "predict_lane", None)
    if lane is None:
        return await anyio.to_thread.run_sync(fn)
    return await lane.run(fn, merge)
