"""Keras's fit arguments, checked, and a checked fit plan (what `Trainer.plan_fit` returns).

Also Keras's `class_weight`: read (integer-valued keys, as JSON objects can only spell them as
strings) and turned into per-sample weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.engine.arrays.checks import XY
from app.engine.callbacks import Callback
from app.engine.config.errors import ConfigError, DataError, Loc

DEFAULT_BATCH_SIZE = 32
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 1 << 20
MAX_STEPS = 1 << 30
MAX_CLASSES = 100_000
SHUFFLE_MODES = (True, False, "batch")


@dataclass
class FitArgs:
    """Keras's fit arguments that this engine honours, checked. `batch_size` None means 32, or
    ceil(N / steps_per_epoch) when steps_per_epoch is given (`resolved` fixes it)."""

    batch_size: int | None = None
    epochs: int = 1
    shuffle: bool | str = True
    validation_split: float = 0.0
    initial_epoch: int = 0
    validation_batch_size: int | None = None
    validation_freq: int | list[int] = 1
    seed: int | None = None
    class_weight: Mapping[Any, Any] | None = None
    steps_per_epoch: int | None = None
    validation_steps: int | None = None

    def check(self, loc: Loc = ()) -> None:
        for key in ("batch_size", "validation_batch_size"):
            value = getattr(self, key)
            if value is not None and not (_is_int(value) and 1 <= value <= MAX_BATCH_SIZE):
                raise ConfigError((*loc, key), f"must be an integer in [1, {MAX_BATCH_SIZE}], "
                                  f"got {value!r}")  # fmt: skip
        for key in ("steps_per_epoch", "validation_steps"):
            value = getattr(self, key)
            if value is not None and not (_is_int(value) and 1 <= value <= MAX_STEPS):
                raise ConfigError((*loc, key), f"must be null or an integer in [1, {MAX_STEPS}], "
                                  f"got {value!r}")  # fmt: skip
        if not 0 <= self.initial_epoch < self.epochs <= MAX_EPOCHS:
            raise ConfigError(
                (*loc, "epochs"),
                f"must be greater than initial_epoch ({self.initial_epoch}) and at most "
                f"{MAX_EPOCHS}, got {self.epochs}",
            )
        if not 0.0 <= self.validation_split < 1.0:
            raise ConfigError((*loc, "validation_split"), "must be in [0, 1)")
        if not any(self.shuffle is mode or self.shuffle == mode for mode in SHUFFLE_MODES):
            raise ConfigError((*loc, "shuffle"), f"must be true, false or 'batch', got "
                              f"{self.shuffle!r}")  # fmt: skip
        freq = self.validation_freq
        if isinstance(freq, int) and not isinstance(freq, bool):
            if freq < 1:
                raise ConfigError((*loc, "validation_freq"), f"must be >= 1, got {freq}")
        elif not (isinstance(freq, list) and all(_is_int(f) and f >= 1 for f in freq)):
            raise ConfigError(
                (*loc, "validation_freq"),
                f"must be a positive integer or a list of 1-based epoch numbers, got {freq!r}",
            )
        if self.class_weight is not None:
            read_class_weight(self.class_weight, (*loc, "class_weight"))

    def resolved(self, n: int) -> FitArgs:
        """These arguments with Keras's batch size for n training samples."""
        bs = self.batch_size
        if bs is None:
            bs = math.ceil(n / self.steps_per_epoch) if self.steps_per_epoch else DEFAULT_BATCH_SIZE
        return FitArgs(**{**self.__dict__, "batch_size": bs})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_class_weight(value: Any, loc: Loc) -> dict[int, float]:
    """Class index -> weight. Keys are class indices: integers, or strings that spell one (a
    JSON object's keys are strings); weights finite and not negative."""
    if not isinstance(value, Mapping):
        raise ConfigError(loc, f"must be an object mapping class index to weight, got "
                          f"{type(value).__name__}")  # fmt: skip
    if len(value) > MAX_CLASSES:
        raise ConfigError(loc, f"has {len(value)} classes; the limit is {MAX_CLASSES}")
    out: dict[int, float] = {}
    for key, weight in value.items():
        index = _class_index(key)
        if index is None:
            raise ConfigError((*loc, str(key)), f"keys must be class indices (integers >= 0, "
                              f"or strings such as \"0\"), got {key!r}")  # fmt: skip
        if index in out:
            raise ConfigError((*loc, str(key)), f"class {index} is given twice")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ConfigError((*loc, str(key)), f"must be a number, got {weight!r}")
        if not (math.isfinite(weight) and weight >= 0):
            raise ConfigError((*loc, str(key)), f"must be finite and >= 0, got {weight!r}")
        out[index] = float(weight)
    return out


def _class_index(key: Any) -> int | None:
    if _is_int(key):
        return int(key) if key >= 0 else None
    if isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 9:
        return int(key)
    return None


def class_sample_weights(y: np.ndarray, class_weight: Mapping[int, float]) -> np.ndarray:
    """Keras's per-sample weights from class weights: labels of rank > 1 are one-hot (argmax
    over the last axis) unless that axis has size 1 (squeezed); labels are rounded to int;
    classes without a weight get 1."""
    labels = y
    if labels.ndim > 1:
        labels = np.argmax(labels, axis=-1) if labels.shape[-1] != 1 else labels[..., 0]
    if labels.ndim != 1:
        raise DataError((), f"class_weight needs one label per sample, got labels of shape "
                        f"{list(y.shape)}")  # fmt: skip
    indices = np.round(labels).astype(np.int64)
    weights = np.ones(indices.shape[0], dtype=np.float32)
    for index, weight in class_weight.items():
        weights[indices == index] = weight
    return weights


def apply_class_weight(data: XY, class_weight: Mapping[Any, Any], loc: Loc) -> XY:
    """The training data with sample weights from class weights (Keras refuses class_weight
    together with sample_weight, and on models with several outputs)."""
    weights = read_class_weight(class_weight, (*loc, "class_weight"))
    if len(data.y) != 1:
        raise ConfigError((*loc, "class_weight"), f"is only supported for models with one "
                          f"output; this model has {len(data.y)}")  # fmt: skip
    if data.sample_weight[0] is not None:
        raise ConfigError((*loc, "class_weight"), "cannot be given together with sample_weight")
    y = data.y[0]
    if y is None:
        raise DataError((*loc, "y"), "is required with class_weight")
    try:
        sw = class_sample_weights(y, weights)
    except DataError as exc:
        raise DataError((*loc, "class_weight"), exc.message) from None
    return XY(data.x, data.y, [sw])


@dataclass
class FitPlan:
    """A checked fit: arguments (batch size resolved), (x, y, sample_weight) to train on (class
    weights already folded into sample_weight), optional validation set."""

    args: FitArgs
    train: XY
    validation: XY | None
    callbacks: list[Callback]


def should_validate(epoch: int, freq: int | list[int]) -> bool:
    if isinstance(freq, int):
        return (epoch + 1) % freq == 0
    return epoch + 1 in freq
