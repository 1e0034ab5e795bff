"""Callback hooks, the list that dispatches them, History, and lazily read batch logs.

Hook names and order are Keras's. Batch-level logs are running averages, as in Keras, but they
are computed only if a callback reads them: reading them costs a device-to-host sync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from app.engine.config.errors import Loc

if TYPE_CHECKING:
    from app.engine.training.trainer import Trainer

Logs = Mapping[str, float]


class LazyLogs(Mapping[str, float]):
    """Logs computed on first access (one host sync), then cached."""

    def __init__(self, compute: Callable[[], dict[str, float]]) -> None:
        self._compute = compute
        self._value: dict[str, float] | None = None

    def _get(self) -> dict[str, float]:
        if self._value is None:
            self._value = self._compute()
        return self._value

    def __getitem__(self, key: str) -> float:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


class Callback:
    """Base class: every hook does nothing. `self.trainer` is set before training starts."""

    trainer: Trainer

    def set_trainer(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def check(self, log_keys: set[str], loc: Loc) -> None:
        """Validate against the log keys the coming fit will produce (before any work)."""

    def get_config(self) -> dict[str, Any]:
        return {}

    def get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """What a resumed fit needs to carry on with this callback: tensors and JSON scalars,
        or None for a callback that keeps nothing across epochs. Checkpoints taken at an epoch
        end hold it as it is after every callback's `on_epoch_end`."""
        return None

    def set_state(self, tensors: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> None:
        """Take back what `get_state` gave (a resumed fit calls it after `on_train_begin`)."""

    def on_train_begin(self, logs: Logs | None = None) -> None: ...
    def on_train_end(self, logs: Logs | None = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None: ...
    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_test_begin(self, logs: Logs | None = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None: ...
    def on_test_end(self, logs: Logs | None = None) -> None: ...


class CallbackList(Callback):
    """Calls each hook on every callback, in list order."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def set_trainer(self, trainer: Trainer) -> None:
        for cb in self.callbacks:
            cb.set_trainer(trainer)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_train_end(self, logs: Logs | None = None) -> None:
        for cb in self.callbacks:
            cb.on_train_end(logs)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        for cb in self.callbacks:
            cb.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        for cb in self.callbacks:
            cb.on_train_batch_end(batch, logs)

    def on_test_begin(self, logs: Logs | None = None) -> None:
        for cb in self.callbacks:
            cb.on_test_begin(logs)

    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        for cb in self.callbacks:
            cb.on_test_batch_end(batch, logs)

    def on_test_end(self, logs: Logs | None = None) -> None:
        for cb in self.callbacks:
            cb.on_test_end(logs)


class History(Callback):
    """Keras's History: `history` maps each log key to its per-epoch values."""

    def __init__(self) -> None:
        self.epoch: list[int] = []
        self.history: dict[str, list[float]] = {}

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
