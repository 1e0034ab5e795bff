"""The callbacks the service runs, with Keras's argument names and defaults; each becomes the
`{class_name, config}` the fit request takes (`to_spec()`). Keras's own callback objects of the
same names are converted too (`spec_of`)."""

from __future__ import annotations

import inspect
import math
from typing import Any

from fitapi.specs import is_keras_object, plain


class Callback:
    """A callback to run on the server: its constructor's arguments are its config."""

    def __init__(self, **config: Any) -> None:
        self.config = config

    def to_spec(self) -> dict[str, Any]:
        return {"class_name": type(self).__name__, "config": plain(self.config)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"


class EarlyStopping(Callback):
    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False,
                 start_from_epoch: int = 0) -> None:  # fmt: skip
        del verbose  # printing is the client's: accepted as Keras does, not sent
        super().__init__(monitor=monitor, min_delta=min_delta, patience=patience, mode=mode,
                         baseline=baseline, restore_best_weights=restore_best_weights,
                         start_from_epoch=start_from_epoch)  # fmt: skip


class ReduceLROnPlateau(Callback):
    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0) -> None:  # fmt: skip
        del verbose
        super().__init__(monitor=monitor, factor=factor, patience=patience, mode=mode,
                         min_delta=min_delta, cooldown=cooldown, min_lr=min_lr)  # fmt: skip


class ModelCheckpoint(Callback):
    """`filepath` is only a label (ending in `.keras`, or `.weights.h5` with
    save_weights_only): the server keeps the checkpoints (`job.checkpoints()`)."""

    def __init__(self, filepath: str = "model.keras", monitor: str = "val_loss",
                 verbose: int = 0, save_best_only: bool = False,
                 save_weights_only: bool = False, mode: str = "auto",
                 save_freq: str | int = "epoch",
                 initial_value_threshold: float | None = None) -> None:  # fmt: skip
        del verbose
        super().__init__(filepath=str(filepath), monitor=monitor, save_best_only=save_best_only,
                         save_weights_only=save_weights_only, mode=mode, save_freq=save_freq,
                         initial_value_threshold=initial_value_threshold)  # fmt: skip


class TerminateOnNaN(Callback):
    def __init__(self, raise_error: bool = False) -> None:
        super().__init__(raise_error=raise_error)


class ThresholdStopping(Callback):
    """Stop at the end of the first epoch whose `monitor` reaches `threshold` (>= when the
    mode is max, <= when min)."""

    def __init__(self, monitor: str, threshold: float, mode: str = "auto") -> None:
        super().__init__(monitor=monitor, threshold=threshold, mode=mode)


class LearningRateScheduler(Callback):
    """`schedule` is a learning-rate schedule (`{class_name, config}` or a Keras schedule
    object) evaluated at the 0-based epoch: the server cannot run a Python function."""

    def __init__(self, schedule: Any, verbose: int = 0) -> None:
        if callable(schedule) and not (isinstance(schedule, dict) or is_keras_object(schedule)):
            raise TypeError(
                "LearningRateScheduler: the server cannot run a Python function; give a "
                "schedule ({class_name, config} or a Keras schedule object)"
            )
        super().__init__(schedule=schedule, verbose=verbose)


RUN: tuple[type[Callback], ...] = (EarlyStopping, ReduceLROnPlateau, ModelCheckpoint,
                                   TerminateOnNaN, ThresholdStopping,
                                   LearningRateScheduler)  # fmt: skip
KNOWN: dict[str, type[Callback]] = {cls.__name__: cls for cls in RUN}
SKIPPED = {"History", "ProgbarLogger"}  # the client's own work


def spec_of(callback: Any) -> dict[str, Any] | None:
    """A fitapi callback, a `{class_name, config}` dict, or a Keras callback object of a name
    the service runs (read from its attributes); None for Keras's History and ProgbarLogger."""
    if isinstance(callback, Callback):
        return callback.to_spec()
    if isinstance(callback, dict):
        return plain(callback)
    name = type(callback).__name__
    if name in SKIPPED:
        return None
    cls = KNOWN.get(name)
    if cls is None:
        raise TypeError(f"the service does not run the callback {name}; it runs {sorted(KNOWN)}")
    params = inspect.signature(cls.__init__).parameters
    kwargs = {p: getattr(callback, p) for p in params if p != "self" and hasattr(callback, p)}
    if name == "ModelCheckpoint":  # Keras keeps the threshold as its running best, else ±inf
        best = getattr(callback, "best", None)
        finite = isinstance(best, (int, float)) and math.isfinite(best)
        kwargs["initial_value_threshold"] = float(best) if finite and best is not None else None
    return cls(**kwargs).to_spec()
