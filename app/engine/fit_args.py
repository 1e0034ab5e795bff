"""Keras's fit arguments, checked, and a checked fit plan (what `Trainer.plan_fit` returns)."""

from __future__ import annotations

from dataclasses import dataclass

from app.engine.callbacks import Callback
from app.engine.data import XY
from app.engine.errors import ConfigError, Loc

DEFAULT_BATCH_SIZE = 32
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 1 << 20


@dataclass
class FitArgs:
    """Keras's fit arguments that this engine honours, checked."""

    batch_size: int = DEFAULT_BATCH_SIZE
    epochs: int = 1
    shuffle: bool = True
    validation_split: float = 0.0
    initial_epoch: int = 0
    validation_batch_size: int | None = None
    validation_freq: int | list[int] = 1
    seed: int | None = None

    def check(self, loc: Loc = ()) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ConfigError((*loc, "batch_size"), f"must be in [1, {MAX_BATCH_SIZE}]")
        if not 0 <= self.initial_epoch < self.epochs <= MAX_EPOCHS:
            raise ConfigError(
                (*loc, "epochs"),
                f"must be greater than initial_epoch ({self.initial_epoch}) and at most "
                f"{MAX_EPOCHS}, got {self.epochs}",
            )
        if not 0.0 <= self.validation_split < 1.0:
            raise ConfigError((*loc, "validation_split"), "must be in [0, 1)")
        freq = self.validation_freq
        if isinstance(freq, int) and not isinstance(freq, bool):
            if freq < 1:
                raise ConfigError((*loc, "validation_freq"), f"must be >= 1, got {freq}")
        elif not (isinstance(freq, list) and all(isinstance(f, int) and f >= 1 for f in freq)):
            raise ConfigError(
                (*loc, "validation_freq"),
                f"must be a positive integer or a list of 1-based epoch numbers, got {freq!r}",
            )


@dataclass
class FitPlan:
    """A checked fit: arguments, (x, y, sample_weight) to train on, optional validation set."""

    args: FitArgs
    train: XY
    validation: XY | None
    callbacks: list[Callback]


def should_validate(epoch: int, freq: int | list[int]) -> bool:
    if isinstance(freq, int):
        return (epoch + 1) % freq == 0
    return epoch + 1 in freq
