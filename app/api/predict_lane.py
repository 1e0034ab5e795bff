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
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from app.models.service import shared_state_reads

log = logging.getLogger(__name__)
T = TypeVar("T")
_Task = tuple[Callable[[], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]


class PredictLane:
    def __init__(self, threads: int) -> None:
        self._waiting: deque[_Task] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"fitapi-predict-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    async def run(self, fn: Callable[[], T]) -> T:
        """`fn()` on a lane thread; its result, or its exception raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._cond:
            if self._closing:
                raise RuntimeError("the predict lane is closed")
            self._waiting.append((fn, future, loop))
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
                self._cond.wait_for(lambda: bool(self._waiting) or self._closing)
                if not self._waiting:
                    return  # closing, nothing left
                tasks = list(self._waiting)
                self._waiting.clear()
            self._run_pass(tasks)

    @staticmethod
    def _run_pass(tasks: list[_Task]) -> None:
        answers: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        with shared_state_reads():
            for fn, future, loop in tasks:
                if future.cancelled():  # the caller has gone (read without the loop: a hint)
                    continue
                try:
                    answer = (future, True, fn())
                except BaseException as exc:
                    answer = (future, False, exc)
                answers.setdefault(loop, []).append(answer)
        for loop, done in answers.items():
            try:
                loop.call_soon_threadsafe(_deliver, done)
            except RuntimeError:  # the loop has closed: nobody waits for these answers
                log.debug("predict answers dropped: their event loop has closed")


def _deliver(done: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in done:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


async def run_predict(state: Any, fn: Callable[[], T]) -> T:
    """`fn()` on the app's predict lane; on a pool thread where the app runs without its
    lifespan (no lane)."""
    lane: PredictLane | None = getattr(state, "predict_lane", None)
    if lane is None:
        return await anyio.to_thread.run_sync(fn)
    return await lane.run(fn)
