"""ReduceLROnPlateau with Keras 3's rules: the rate is logged as `learning_rate` before any
reduction, and reduced by `factor` after `patience` epochs without improvement (then a
`cooldown`), never below `min_lr`.

With a schedule as the optimizer's learning rate, Keras's fit runs (logging the schedule's
current rate) until the first epoch that calls for a reduction, and fails there, since a
schedule cannot be set: so does this one, with `LearningRateNotSettable`."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any, Self

import numpy as np
import torch

from app.engine.callbacks.base import Logs
from app.engine.callbacks.monitor import MonitorCallback, mode_key
from app.engine.callbacks.registry import CALLBACKS
from app.engine.callbacks.state import decode_float, encode_float
from app.engine.config.declared import Key, integer, number, string
from app.engine.config.errors import ConfigError, LearningRateNotSettable, Loc
from app.engine.config.readers import get_float


def _read_factor(config: Mapping[str, Any], key: str, loc: Loc, default: float) -> float:
    factor = float(get_float(config, key, loc, default, min_value=0.0))
    if factor >= 1.0:
        raise ConfigError((*loc, key), f"must be < 1.0 (a reduction), got {factor}")
    return factor


@CALLBACKS.add()
class ReduceLROnPlateau(MonitorCallback):
    """Multiply the optimizer's learning rate by `factor` when `monitor` stops improving."""

    monitor = string("val_loss")
    factor = Key[float](_read_factor, 0.1)
    patience = integer(10, min_value=0)
    verbose = integer(0, saved=False)  # accepted for Keras's sake; nothing is printed
    mode = mode_key()
    min_delta = number(1e-4)
    cooldown = integer(0, min_value=0)
    min_lr = number(0.0, min_value=0.0)

    def __post_init__(self) -> None:
        if self.factor >= 1.0:
            raise ConfigError(("factor",), f"must be < 1.0 (a reduction), got {self.factor}")
        self.best: float | None = None
        self.wait = 0
        self.cooldown_counter = 0
        self._loc: Loc = ()  # where the callback is in the request, for its error

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc) -> Self:
        callback = super().from_config(config, loc)
        callback._loc = loc[:-1] if loc and loc[-1] == "config" else loc
        return callback

    def check(self, log_keys: set[str], loc: Loc) -> None:
        self._loc = loc
        super().check(log_keys, loc)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        # The rate itself is the optimizer's, and its checkpoint state holds it.
        return {}, {
            "best": encode_float(self.best),
            "wait": self.wait,
            "cooldown_counter": self.cooldown_counter,
        }

    def set_state(self, tensors: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> None:
        self.best, self.wait = decode_float(state["best"]), int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        optimizer = self.trainer.optimizer
        if isinstance(logs, MutableMapping):  # fit passes the epoch's own dict: History sees it
            logs["learning_rate"] = optimizer.learning_rate
        current = (logs or {}).get(self.monitor)
        if current is None:  # e.g. a val_ key on an epoch without validation
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current, self.best, self.min_delta):
            self.best, self.wait = current, 0
        elif not self.cooldown_counter > 0:
            self.wait += 1
            # Keras holds min_lr against the float32 rate.
            old = optimizer.learning_rate
            if self.wait >= self.patience and old > np.float32(self.min_lr):
                if optimizer.schedule is not None:
                    raise LearningRateNotSettable(
                        self._loc,
                        f"ReduceLROnPlateau reduces the learning rate at epoch "
                        f"{epoch}, but the optimizer's learning_rate is a schedule "
                        f"({type(optimizer.schedule).__name__}), which cannot be set (Keras's fit "
                        "fails here too); compile with a number as learning_rate for the "
                        "callback to change it",
                        epoch=epoch,
                    )
                optimizer.learning_rate = max(old * self.factor, self.min_lr)
                self.cooldown_counter, self.wait = self.cooldown, 0
