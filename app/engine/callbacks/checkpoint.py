"""ModelCheckpoint: when to save, by Keras 3's rules (every epoch or every `save_freq`
batches, counted across epochs; with `save_best_only`, only on a strict improvement of
`monitor`). Where to save is not its business: given a sink (`set_sink`), it calls
`sink(epoch, logs, batch)` and the sink's owner stores the checkpoint; without one, it keeps the
last saved weights in memory."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from app.engine.callbacks.base import Logs
from app.engine.callbacks.monitor import MonitorCallback, mode_key
from app.engine.callbacks.registry import CALLBACKS
from app.engine.callbacks.state import decode_float, encode_float, prefixed, unprefixed
from app.engine.config.declared import Key, boolean, integer, number_or_none, string, string_or_none
from app.engine.config.errors import ConfigError, Loc

Sink = Callable[[int, Logs, "int | None"], None]
MAX_SAVE_FREQ = 1 << 30


def _read_save_freq(config: Mapping[str, Any], key: str, loc: Loc, default: str) -> str | int:
    value = config.get(key, default)
    if value == "epoch":
        return "epoch"
    if isinstance(value, float) and value.is_integer():  # JSON writers may emit 3.0
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SAVE_FREQ:
        return value
    raise ConfigError((*loc, key), f"must be 'epoch' or a number of batches >= 1, got {value!r}")


@CALLBACKS.add()
class ModelCheckpoint(MonitorCallback):
    """Save at the end of every epoch (`save_freq="epoch"`) or every `save_freq` batches;
    with `save_best_only`, only when `monitor` beats the best so far (which starts at
    `initial_value_threshold`). `filepath` is a label only: nothing is written to a path."""

    filepath = string_or_none()
    monitor = string("val_loss")
    verbose = integer(0, saved=False)  # accepted for Keras's sake; nothing is printed
    save_best_only = boolean(False)
    save_weights_only = boolean(False)
    mode = mode_key()
    save_freq = Key[str | int](_read_save_freq, "epoch")
    initial_value_threshold = number_or_none()

    def __post_init__(self) -> None:
        # As in Keras, the best value is not reset between fits.
        self.best: float | None = self.initial_value_threshold
        self._sink: Sink | None = None
        self.saves: list[tuple[int, int | None]] = []  # (epoch, batch or None) of each save
        self.last_saved: dict[str, torch.Tensor] | None = None
        self._epoch = 0
        self._since_save = 0
        self._last_batch: int | None = None

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        if values["filepath"] is not None:
            _check_filepath(values["filepath"], values["save_weights_only"], (*loc, "filepath"))

    def set_sink(self, sink: Sink | None) -> None:
        """Where each save goes: `sink(epoch, logs, batch)` is called instead of keeping the
        weights in memory (None: back to keeping them)."""
        self._sink = sink

    @property
    def batch_level(self) -> bool:
        return self.save_freq != "epoch"

    def check(self, log_keys: set[str], loc: Loc) -> None:
        # Keras resolves the mode at the first epoch end even without save_best_only.
        self.resolved_mode(loc)
        if not self.save_best_only:
            return
        # Batch-level saves see the running training logs only.
        keys = {k for k in log_keys if not k.startswith("val_")} if self.batch_level else log_keys
        if self.monitor not in keys:
            when = "batch" if self.batch_level else "epoch"
            raise ConfigError(
                (*loc, "config", "monitor"),
                f"save_best_only needs {self.monitor!r} in the {when} logs this fit produces: "
                f"{sorted(keys)}",
            )

    def get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        # The batch count carries across epochs, so it carries across a resume too.
        return prefixed("last_saved", self.last_saved or {}), {
            "best": encode_float(self.best),
            "since_save": self._since_save,
            "last_batch": self._last_batch,
        }

    def set_state(self, tensors: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> None:
        self.best, self._since_save = decode_float(state["best"]), int(state["since_save"])
        last = state.get("last_batch")
        self._last_batch = None if last is None else int(last)
        self.last_saved = unprefixed("last_saved", tensors) or None

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if not self.batch_level:
            return
        # Keras's count: batch indices restart each epoch, the count carries over.
        if self._last_batch is None or batch <= self._last_batch:
            self._since_save += batch + 1
        else:
            self._since_save += batch - self._last_batch
        self._last_batch = batch
        assert isinstance(self.save_freq, int)
        if self._since_save >= self.save_freq:
            self._since_save = 0
            self._maybe_save(self._epoch, logs or {}, batch)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if not self.batch_level:
            self._maybe_save(epoch, logs or {}, None)

    def _maybe_save(self, epoch: int, logs: Logs, batch: int | None) -> None:
        if self.save_best_only:
            current = logs.get(self.monitor)
            # A missing value saves, as in Keras (a val_ key on an epoch without validation).
            if current is not None:
                if not self._improved(current, self.best, 0.0):
                    return
                self.best = current
        self.saves.append((epoch, batch))
        if self._sink is not None:
            self._sink(epoch, logs, batch)
        else:
            self.last_saved = self.trainer.snapshot_weights()


def _check_filepath(filepath: str, weights_only: bool, loc: Loc) -> None:
    """Keras's suffix rule, kept so a Keras script's arguments mean the same here."""
    if weights_only and not filepath.endswith(".weights.h5"):
        raise ConfigError(
            loc,
            "with save_weights_only, must end in '.weights.h5' (Keras's "
            f"weights format), got {filepath!r}",
        )
    if not weights_only and not filepath.endswith((".keras", ".h5")):
        raise ConfigError(loc, f"must end in '.keras' (Keras's model format), got {filepath!r}")
