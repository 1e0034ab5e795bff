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
from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_bool, get_float, get_int, get_str
from app.engine.config.registry import known_keys

MODES = ["auto", "min", "max"]


class MonitorCallback(Callback):
    """Resolves `mode` the way Keras 3 does: `loss`/`val_loss` is min, otherwise the direction
    of the compiled metric with that name; anything else cannot be `auto`."""

    monitor: str
    mode: str
    min_delta: float = 0.0

    def check(self, log_keys: set[str], loc: Loc) -> None:
        if self.monitor not in log_keys:
            raise ConfigError(
                (*loc, "config", "monitor"),
                f"{self.monitor!r} is not among the logs this fit produces: {sorted(log_keys)}",
            )
        self.resolved_mode(loc)

    def resolved_mode(self, loc: Loc = ()) -> str:
        if self.mode != "auto":
            return self.mode
        base = self.monitor.removeprefix("val_")
        if base == "loss":
            return "min"
        direction = self.trainer.metric_direction(base) if hasattr(self, "trainer") else None
        if direction == "up":
            return "max"
        if direction == "down":
            return "min"
        raise ConfigError(
            (*loc, "config", "mode"),
            f"mode 'auto' cannot tell whether {self.monitor!r} should go up or down; "
            "set mode to 'min' or 'max'",
        )

    def _improved(self, current: float, reference: float | None, min_delta: float) -> bool:
        if reference is None:
            return True
        # Keras compares backend tensors: both sides are rounded to float32 first.
        if self.resolved_mode() == "min":
            return bool(np.float32(current + abs(min_delta)) < np.float32(reference))
        return bool(np.float32(current - abs(min_delta)) > np.float32(reference))


@CALLBACKS.register("EarlyStopping")
class EarlyStopping(MonitorCallback):
    """Stop when `monitor` has not improved for `patience` epochs (never at epoch 0)."""

    def __init__(
        self,
        *,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        self.monitor, self.min_delta, self.patience, self.mode = monitor, min_delta, patience, mode
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stopped_epoch = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc) -> EarlyStopping:
        known_keys(config, ("monitor", "min_delta", "patience", "verbose", "mode", "baseline",
                            "restore_best_weights", "start_from_epoch"), loc)  # fmt: skip
        return cls(
            monitor=get_str(config, "monitor", loc, "val_loss"),
            min_delta=get_float(config, "min_delta", loc, 0.0),
            patience=get_int(config, "patience", loc, 0, min_value=0),
            mode=get_str(config, "mode", loc, "auto", choices=MODES),
            baseline=get_float(config, "baseline", loc, None, allow_none=True),
            restore_best_weights=get_bool(config, "restore_best_weights", loc, False),
            start_from_epoch=get_int(config, "start_from_epoch", loc, 0, min_value=0),
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor, "min_delta": self.min_delta, "patience": self.patience,
            "mode": self.mode, "baseline": self.baseline,
            "restore_best_weights": self.restore_best_weights,
            "start_from_epoch": self.start_from_epoch,
        }  # fmt: skip

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best, self.best_weights = None, None

    def get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = prefixed("best_weights", self.best_weights or {})
        return tensors, {"wait": self.wait, "best": encode_float(self.best),
                         "best_epoch": self.best_epoch,
                         "stopped_epoch": self.stopped_epoch}  # fmt: skip

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


@CALLBACKS.register("ThresholdStopping")
class ThresholdStopping(MonitorCallback):
    """Stop at the end of the first epoch whose `monitor` reaches `threshold` (>= for max,
    <= for min)."""

    def __init__(self, *, monitor: str, threshold: float, mode: str = "auto") -> None:
        self.monitor, self.threshold, self.mode = monitor, threshold, mode
        self.stopped_epoch: int | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc) -> ThresholdStopping:
        known_keys(config, ("monitor", "threshold", "mode"), loc)
        return cls(
            monitor=get_str(config, "monitor", loc),
            threshold=get_float(config, "threshold", loc),
            mode=get_str(config, "mode", loc, "auto", choices=MODES),
        )

    def get_config(self) -> dict[str, Any]:
        return {"monitor": self.monitor, "threshold": self.threshold, "mode": self.mode}

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
