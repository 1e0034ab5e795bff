"""Per-batch progress, what Keras's ProgbarLogger shows (batch, steps per epoch, running logs),
handed to `emit` at most once per `min_interval_s`: reading the running logs costs a host sync,
so a throttled reporter costs a few syncs a second, whatever the batch rate."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from app.engine.callbacks.base import Callback, Logs

Emit = Callable[[dict[str, Any]], None]


class ProgressReporter(Callback):
    """Calls `emit({"epoch", "batch", "steps", "epochs", "logs"})` after a training batch when
    `min_interval_s` has passed since the last call (the first batch always reports). Epochs
    and batches are 0-based; `steps` is the number of batches per epoch (by default the
    fit's)."""

    def __init__(
        self,
        emit: Emit,
        *,
        epochs: int,
        steps: int | None = None,
        min_interval_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.emit, self.steps, self.epochs = emit, steps, epochs
        self.min_interval_s, self.clock = min_interval_s, clock
        self._epoch = 0
        self._last: float | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        batches = self.trainer.batches
        if self.steps is None and batches is not None:
            self.steps = batches.steps

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        now = self.clock()
        if self._last is not None and now - self._last < self.min_interval_s:
            return
        self._last = now
        self.emit(
            {
                "epoch": self._epoch,
                "batch": batch,
                "steps": self.steps,
                "epochs": self.epochs,
                "logs": dict(logs or {}),
            }
        )
