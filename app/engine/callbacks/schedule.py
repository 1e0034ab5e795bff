"""LearningRateScheduler: the optimizer's rate set at each epoch's start from a learning-rate
schedule evaluated at the 0-based epoch index, and logged as `learning_rate` at its end.

Keras's callback takes a Python function `schedule(epoch, lr)`; a service cannot run one, so this
one takes a schedule config (as an optimizer's `learning_rate` does) and evaluates it per epoch,
not per step. Everything else is Keras's: the rate is set in `on_epoch_begin`, stored as float32,
and the epoch logs get `learning_rate` (History, which runs after user callbacks, records it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from typing import Any

from app.engine.callbacks.base import Callback, Logs
from app.engine.callbacks.registry import CALLBACKS
from app.engine.config.declared import Declared, Key, integer
from app.engine.config.errors import ConfigError, Loc
from app.engine.optimizers import schedules
from app.engine.optimizers.schedules import LearningRateSchedule


def _read_schedule(config: Mapping[str, Any], key: str, loc: Loc) -> LearningRateSchedule:
    if key not in config:
        raise ConfigError((*loc, key), "is required: a learning-rate schedule object")
    return schedules.get(config[key], (*loc, key))


@CALLBACKS.add()
class LearningRateScheduler(Declared, Callback):
    """Set the optimizer's learning rate to `schedule(epoch)` before each epoch."""

    schedule = Key[LearningRateSchedule](_read_schedule, dump=schedules.serialize)
    verbose = integer(0, min_value=0)  # accepted for Keras's sake; nothing is printed

    def __init__(self, schedule: LearningRateSchedule, **values: Any) -> None:
        super().__init__(schedule=schedule, **values)
        self._loc: Loc = ()

    def check(self, log_keys: set[str], loc: Loc) -> None:
        self._loc = loc
        if self.trainer.optimizer.schedule is not None:
            raise ConfigError(
                loc,
                "LearningRateScheduler sets the optimizer's learning rate, but the compiled "
                "optimizer's learning_rate is a schedule; use a constant learning_rate or drop "
                "this callback",
            )

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        rate = self.schedule(epoch)
        if not (math.isfinite(rate) and rate >= 0):
            raise ConfigError(
                (*self._loc, "config", "schedule"),
                f"gave the learning rate {rate} at epoch {epoch}; a rate must be finite and >= 0",
            )
        self.trainer.optimizer.learning_rate = rate

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if isinstance(logs, MutableMapping):  # fit passes the epoch's own dict: History sees it
            logs["learning_rate"] = self.trainer.optimizer.learning_rate
