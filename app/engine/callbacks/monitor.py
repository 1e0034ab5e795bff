"""Callbacks that watch a logged value: EarlyStopping (Keras's rules) and ThresholdStopping."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from app.engine.callbacks.base import Callback, Logs
from app.engine.callbacks.registry import CALLBACKS
from app.engine.callbacks.state import decode_float, encode_float, prefixed, unprefixed
from app.engine.config.declared import (
    Declared,
    Key,
    anything,
    boolean,
    integer,
    number,
    number_or_none,
    string,
)
from app.engine.config.errors import ConfigError, Loc

MODES = ["auto", "min", "max"]


def mode_key() -> Key[str]:
    return string("auto", choices=MODES)


class MonitorCallback(Declared, Callback):
    """Resolves `mode` the way Keras 3 does: `loss`/`val_loss` is min, otherwise the direction
    of the compiled metric with that name; anything else cannot be `auto`. Each subclass
    declares `monitor` and `mode` where Keras's config order puts them."""

    def check(self, log_keys: set[str], loc: Loc) -> None:
        monitor: str = self._value("monitor")
        if monitor not in log_keys:
            raise ConfigError(
                (*loc, "config", "monitor"),
                f"{monitor!r} is not among the logs this fit produces: {sorted(log_keys)}",
            )
        self.resolved_mode(loc)

    def resolved_mode(self, loc: Loc = ()) -> str:
        mode: str = self._value("mode")
        monitor: str = self._value("monitor")
        if mode != "auto":
            return mode
        base = monitor.removeprefix("val_")
        if base == "loss":
            return "min"
        direction = self.trainer.metric_direction(base) if hasattr(self, "trainer") else None
        if direction == "up":
            return "max"
        if direction == "down":
            return "min"
        raise ConfigError(
            (*loc, "config", "mode"),
            f"mode 'auto' cannot tell whether {monitor!r} should go up or down; "
            "set mode to 'min' or 'max'",
        )

    def _improved(self, current: float, reference: float | None, min_delta: float) -> bool:
        if reference is None:
            return True
        # Keras compares backend tensors: both sides are rounded to float32 first.
        if self.resolved_mode() == "min":
            return bool(np.float32(current + abs(min_delta)) < np.float32(reference))
        return bool(np.float32(current - abs(min_delta)) > np.float32(reference))


@CALLBACKS.add()
class EarlyStopping(MonitorCallback):
    """Stop when `monitor` has not improved for `patience` epochs (never at epoch 0)."""

    monitor = string("val_loss")
    min_delta = number(0.0)
    patience = integer(0, min_value=0)
    verbose = anything(0, saved=False)  # accepted for Keras's sake; nothing is printed
    mode = mode_key()
    baseline = number_or_none()
    restore_best_weights = boolean(False)
    start_from_epoch = integer(0, min_value=0)

    def __post_init__(self) -> None:
        self.wait = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stopped_epoch = 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best, self.best_weights = None, None

    def get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = prefixed("best_weights", self.best_weights or {})
        return tensors, {
            "wait": self.wait,
            "best": encode_float(self.best),
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
        }

    def set_state(self, tensors: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> None:
        self.wait, self.best = int(state["wait"]), decode_float(state["best"])
        self.best_epoch, self.stopped_epoch = int(state["best_epoch"]), int(state["stopped_epoch"])
        self.best_weights = unprefixed("best_weights", tensors) or None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        current = (logs or {}).get(self.monitor)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.trainer.snapshot_weights()
        self.wait += 1
        if self._improved(current, self.best, self.min_delta):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.trainer.snapshot_weights()
            if self.baseline is None or self._improved(current, self.baseline, self.min_delta):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        # Keras 3 restores whenever a best snapshot exists, stopped early or not.
        if self.restore_best_weights and self.best_weights is not None:
            self.trainer.restore_weights(self.best_weights)


@CALLBACKS.add()
class ThresholdStopping(MonitorCallback):
    """Stop at the end of the first epoch whose `monitor` reaches `threshold` (>= for max,
    <= for min)."""

    monitor = string()
    threshold = number()
    mode = mode_key()

    def __post_init__(self) -> None:
        self.stopped_epoch: int | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.stopped_epoch = None

    def get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {"stopped_epoch": self.stopped_epoch}

    def set_state(self, tensors: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> None:
        stopped = state.get("stopped_epoch")
        self.stopped_epoch = None if stopped is None else int(stopped)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        current = (logs or {}).get(self.monitor)
        if current is None or math.isnan(current):
            return
        reached = (
            current >= self.threshold
            if self.resolved_mode() == "max"
            else current <= self.threshold
        )
        if reached:
            self.stopped_epoch = epoch
            self.trainer.stop_training = True
