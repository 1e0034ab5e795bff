"""Keras's progress lines for a fit, drawn from the job's events: `Epoch 3/10` (when there is
more than one epoch), then, with verbose=1, a bar redrawn from `progress` events on a terminal
and finished by the epoch's logs, or, with verbose=2, one line per epoch; 0 prints nothing.
The time per step is the server's: the time between the epoch's row and the previous one's (or
the job's start), over the epoch's steps; where the server gave no times, the client's wall time
since the previous epoch's line."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

WIDTH = 20


def _value(v: Any, *, absolute: bool) -> str:
    if v is None:
        return "nan"
    number = float(v)
    if math.isnan(number) or math.isinf(number):
        return f"{number}"
    big = abs(number) > 1e-3 if absolute else number > 1e-3
    return f"{number:.4f}" if big else f"{number:.4e}"


def _per_step(seconds: float) -> str:
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def _count(current: int, target: int | None) -> str:
    if not target:
        return f"{current}/{current}"
    digits = int(math.log10(target)) + 1
    return f"{current:>{digits}}/{target}"


class EpochPrinter:
    """Prints as Keras's ProgbarLogger does, from the stream's events."""

    def __init__(
        self,
        verbose: int | str = 1,
        *,
        epochs: int,
        steps: int | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.verbose = 1 if verbose == "auto" else int(verbose)
        self.epochs, self.steps = epochs, steps
        self.out = out or sys.stdout
        self.dynamic = bool(getattr(self.out, "isatty", lambda: False)())
        self.current: int | None = None  # the epoch whose bar is open
        self.started = time.monotonic()
        self.seen = 0
        self._width = 0

    def _begin(self, epoch: int) -> None:
        if self.current == epoch:
            return
        self.current, self.seen = epoch, 0
        if self.verbose and self.epochs > 1:
            self._write(f"Epoch {epoch + 1}/{self.epochs}\n")

    def progress(self, data: Mapping[str, Any]) -> None:
        """A `progress` event: the running logs after batch `batch` (0-based) of `steps`."""
        if not self.verbose:
            return
        self._begin(int(data.get("epoch", 0)))
        if data.get("steps"):
            self.steps = int(data["steps"])
        self.seen = int(data.get("batch", 0)) + 1
        if self.verbose == 1 and self.dynamic:
            line = self._bar_line(self.seen, data.get("logs") or {}, final=False)
            pad = max(0, self._width - len(line))
            self._width = len(line)
            self._write("\r" + line + " " * pad)

    def epoch(self, epoch: int, logs: Mapping[str, Any], seconds: float | None = None) -> None:
        """An `epoch` event: the epoch's final logs (validation included), and how long the
        server took over it when known."""
        if not self.verbose:
            return
        self._begin(epoch)
        if seconds is not None:
            self.started = time.monotonic() - max(0.0, seconds)
        target = self.steps or self.seen or None
        if self.verbose == 1:
            line = self._bar_line(target or 0, logs, final=True)
            prefix = "\r" if self.dynamic and self._width else ""
            pad = max(0, self._width - len(line)) if prefix else 0
            self._write(prefix + line + " " * pad + "\n")
        else:
            elapsed = time.monotonic() - self.started
            step = elapsed / target if target else 0.0
            items = "".join(f" - {k}: {_value(v, absolute=False)}" for k, v in logs.items())
            self._write(f"{_count(target or 0, target)} - {elapsed:.0f}s - "
                        f"{_per_step(step)}{items}\n")  # fmt: skip
        self.current, self._width, self.started = None, 0, time.monotonic()

    def _bar_line(self, current: int, logs: Mapping[str, Any], *, final: bool) -> str:
        target = self.steps
        elapsed = time.monotonic() - self.started
        step = elapsed / current if current else 0.0
        filled = int(WIDTH * current / target) if target else WIDTH
        bar = f"{'━' * filled}{'━' * (WIDTH - filled)}"
        if self.dynamic:
            bar = f"\x1b[32m{'━' * filled}\x1b[0m\x1b[37m{'━' * (WIDTH - filled)}\x1b[0m"
        if final or not target:
            when = f"{elapsed:.0f}s"
        else:
            eta = step * (target - current)
            when = f"{eta:.0f}s" if eta <= 60 else f"{eta // 60:.0f}:{eta % 60:02.0f}"
        items = "".join(f" - {k}: {_value(v, absolute=True)}" for k, v in logs.items())
        return f"{_count(current, target)} {bar} {when} {_per_step(step)}{items}"

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
