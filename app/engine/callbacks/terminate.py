"""TerminateOnNaN: Keras's check of the running `loss` after every training batch."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from app.engine.callbacks.base import Callback, Logs
from app.engine.callbacks.registry import CALLBACKS
from app.engine.config.declared import Declared, boolean
from app.engine.config.errors import EngineError


class NonFiniteLoss(EngineError, RuntimeError):
    """The loss became NaN or Inf under TerminateOnNaN(raise_error=True). A RuntimeError, as
    Keras raises, and an EngineError, so a job fails with this message."""


@CALLBACKS.add()
class TerminateOnNaN(Declared, Callback):
    """Stop (or, with `raise_error`, fail) the fit once the running loss is NaN or Inf.

    Stopping cuts the epoch short; its validation and `on_epoch_end` still run, as in Keras.
    Reading the running loss costs one host sync per batch."""

    raise_error = boolean(False)

    def __post_init__(self) -> None:
        self.stopped_at: tuple[int, int] | None = None  # (epoch, batch)
        self._epoch = 0

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.stopped_at = None

    def get_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {"stopped_at": None if self.stopped_at is None else list(self.stopped_at)}

    def set_state(self, tensors: Mapping[str, torch.Tensor], state: Mapping[str, Any]) -> None:
        at = state.get("stopped_at")
        self.stopped_at = None if at is None else (int(at[0]), int(at[1]))

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        self.stopped_at = (self._epoch, batch)
        if self.raise_error:
            raise NonFiniteLoss(
                (),
                f"the loss became {loss} at batch {batch} of epoch {self._epoch} (0-based); "
                "TerminateOnNaN(raise_error=True) ended the fit",
            )
        self.trainer.stop_training = True
