"""Keras's fit arguments, declared once and checked, and a checked fit plan (what
`Trainer.plan_fit` returns).

`FitArgs` is the one declaration of the fit arguments: each field's name, default, bounds
(`annotated_types` constraints in its annotation) and description (its `doc` metadata). The fit
route's request schema is generated from it (`app.jobs.schemas`), so the API and the engine
cannot drift apart.

Also Keras's `class_weight`: read (integer-valued keys, as JSON objects can only spell them as
strings) and turned into per-sample weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from annotated_types import Ge, Le, Lt, MaxLen, MinLen

from app.engine.arrays.checks import XY
from app.engine.callbacks import Callback
from app.engine.config.errors import ConfigError, DataError, Loc

DEFAULT_BATCH_SIZE = 32
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 1 << 20
MAX_STEPS = 1 << 30
MAX_CLASSES = 100_000
MAX_SEED = 2**63 - 1
SHUFFLE_MODES = (True, False, "batch")

BatchSize = Annotated[int, Ge(1), Le(MAX_BATCH_SIZE)]
Steps = Annotated[int, Ge(1), Le(MAX_STEPS)]
Epoch = Annotated[int, Ge(0), Le(MAX_EPOCHS)]


def _doc(description: str) -> dict[str, str]:
    """A fit argument's description in the API's schema (its dataclass field's metadata)."""
    return {"doc": description}


@dataclass
class FitArgs:
    """Keras's fit arguments that this engine honours, checked. `batch_size` None means 32, or
    ceil(N / steps_per_epoch) when steps_per_epoch is given (`resolved` fixes it).

    The annotations' bounds are the API's: its request schema checks them. `check` is the
    engine's own check, for every caller: the sizes, steps and epochs against the same
    constants, and what a schema cannot say (epochs against initial_epoch, validation_freq's
    values, the class weights' keys)."""

    validation_split: Annotated[float, Ge(0.0), Lt(1.0)] = 0.0
    batch_size: BatchSize | None = None
    epochs: Annotated[int, Ge(1), Le(MAX_EPOCHS)] = 1
    initial_epoch: Epoch = 0
    shuffle: bool | Literal["batch"] = field(
        default=True,
        metadata=_doc(
            'true: a new order each epoch; false: in order; "batch": batches in order, samples '
            "shuffled within each batch"
        ),
    )
    class_weight: Annotated[Mapping[Any, float], MaxLen(MAX_CLASSES)] | None = field(
        default=None,
        metadata=_doc(
            "Class index -> weight, turned into per-sample weights for the loss and "
            "weighted_metrics (not for validation). JSON object keys are strings, so class "
            'indices are written "0", "1", ...; missing classes weigh 1. One-output models '
            "only, and not with sample_weight"
        ),
    )
    steps_per_epoch: Steps | None = field(
        default=None,
        metadata=_doc(
            "Batches per epoch; the batch order carries over from epoch to epoch, and an epoch "
            "ends early when the data runs out. Without batch_size, the batch size is "
            "ceil(N / steps_per_epoch)"
        ),
    )
    validation_steps: Steps | None = field(
        default=None, metadata=_doc("Validate on at most this many batches, from the first")
    )
    validation_batch_size: BatchSize | None = None
    validation_freq: int | Annotated[list[int], MinLen(1)] = field(
        default=1, metadata=_doc("Validate every N epochs, or at these 1-based epochs")
    )
    seed: Annotated[int, Ge(0), Le(MAX_SEED)] | None = field(
        default=None, metadata=_doc("Shuffle/dropout seed")
    )

    def check(self, loc: Loc = ()) -> None:
        for key in ("batch_size", "validation_batch_size"):
            value = getattr(self, key)
            if value is not None and not (_is_int(value) and 1 <= value <= MAX_BATCH_SIZE):
                message = f"must be an integer in [1, {MAX_BATCH_SIZE}], got {value!r}"
                raise ConfigError((*loc, key), message)
        for key in ("steps_per_epoch", "validation_steps"):
            value = getattr(self, key)
            if value is not None and not (_is_int(value) and 1 <= value <= MAX_STEPS):
                message = f"must be null or an integer in [1, {MAX_STEPS}], got {value!r}"
                raise ConfigError((*loc, key), message)
        if not 0 <= self.initial_epoch < self.epochs <= MAX_EPOCHS:
            raise ConfigError(
                (*loc, "epochs"),
                f"must be greater than initial_epoch ({self.initial_epoch}) and at most "
                f"{MAX_EPOCHS}, got {self.epochs}",
            )
        if not 0.0 <= self.validation_split < 1.0:
            raise ConfigError((*loc, "validation_split"), "must be in [0, 1)")
        if not any(self.shuffle is mode or self.shuffle == mode for mode in SHUFFLE_MODES):
            message = f"must be true, false or 'batch', got {self.shuffle!r}"
            raise ConfigError((*loc, "shuffle"), message)
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
        return dataclasses.replace(self, batch_size=bs)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_class_weight(value: Any, loc: Loc) -> dict[int, float]:
    """Class index -> weight. Keys are class indices: integers, or strings that spell one (a
    JSON object's keys are strings); weights finite and not negative."""
    if not isinstance(value, Mapping):
        message = f"must be an object mapping class index to weight, got {type(value).__name__}"
        raise ConfigError(loc, message)
    if len(value) > MAX_CLASSES:
        raise ConfigError(loc, f"has {len(value)} classes; the limit is {MAX_CLASSES}")
    out: dict[int, float] = {}
    for key, weight in value.items():
        index = _class_index(key)
        if index is None:
            message = (
                f'keys must be class indices (integers >= 0, or strings such as "0"), got {key!r}'
            )
            raise ConfigError((*loc, str(key)), message)
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
        message = f"class_weight needs one label per sample, got labels of shape {list(y.shape)}"
        raise DataError((), message)
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
        message = f"is only supported for models with one output; this model has {len(data.y)}"
        raise ConfigError((*loc, "class_weight"), message)
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
    """A checked fit: arguments, (x, y, sample_weight) to train on (class weights already
    folded into sample_weight), optional validation set. The arguments' batch size is resolved
    for the training data when the plan is made (`FitArgs.resolved`)."""

    args: FitArgs
    train: XY
    validation: XY | None
    callbacks: list[Callback]

    def __post_init__(self) -> None:
        self.args = self.args.resolved(self.train.size)

    @property
    def batch_size(self) -> int:
        """The training batch size (resolved)."""
        assert self.args.batch_size is not None
        return self.args.batch_size


def should_validate(epoch: int, freq: int | list[int]) -> bool:
    if isinstance(freq, int):
        return (epoch + 1) % freq == 0
    return epoch + 1 in freq
