"""Prompt API shutdowns. uvicorn, told to stop (SIGTERM, SIGINT), first waits for open
connections to end, and only then runs the lifespan's shutdown: an event stream would hold the
process for up to EVENTS_MAX_S. So the lifespan chains the signal handlers the server installed:
the signal first sets the context's `stopping` flag, which ends every stream within one poll
(each sends a final `reconnect` event; see app.jobs.events), then reaches the server's own
handler as before."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(stopping: threading.Event) -> Iterator[None]:
    """While the block runs, SIGTERM and SIGINT set `stopping` before reaching the handlers
    installed before it. Outside the main thread (a test client's lifespan) it does nothing:
    signal handlers can only be set there."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in SIGNALS}

    def handler(sig: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            log.info("signal %s: closing event streams and stopping", signal.Signals(sig).name)
        stopping.set()
        before = previous[sig]
        if callable(before):
            before(sig, frame)
        elif before == signal.SIG_DFL:  # nobody else handles it: what it would have done
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    for sig in SIGNALS:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for restored, before in previous.items():
            if signal.getsignal(restored) is handler:
                signal.signal(restored, _as_handler(before))


def _as_handler(value: Any) -> Callable[[int, FrameType | None], Any] | int:
    return value if value is not None else signal.SIG_DFL
