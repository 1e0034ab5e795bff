"""Keras 3 learning-rate schedules: the SCHEDULES registry, `get` (a `{class_name, config}` object,
also in the form `keras.optimizers.schedules.serialize` writes) and `serialize`.

A schedule maps a step count (an int, 0 for the first update) to a learning rate. Keras computes
it with float32 tensor operations; each schedule here runs the same operations, in the same order
and with the same mix of Python numbers and float32 tensors, on CPU float32 tensors, so the rate
matches Keras's bit for bit (a CPU computation never synchronises with an accelerator). Config
keys, defaults and names are Keras's.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.declared import (
    REQUIRED,
    Declared,
    Derived,
    Key,
    boolean,
    number,
    number_or_none,
    string,
)
from app.engine.config.errors import ConfigError, Loc
from app.engine.config.registry import Registry

Tensor = torch.Tensor
_MAX_PIECES = 1000
_MODULE = "keras.optimizers.schedules"
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _f32(value: float) -> Tensor:
    return torch.tensor(value, dtype=torch.float32)


# Numbers are kept as given (an int stays an int): Keras echoes a schedule's config as given.
def _rate(default: Any = REQUIRED) -> Key[float]:
    """A learning rate: a float32 in Keras, so one past float32's range would be infinite."""
    return number(default, min_value=0.0, max_value=FLOAT32_MAX, keep_int=True)


def _steps() -> Key[float]:
    return number(min_value=0.0, min_exclusive=True, keep_int=True)


class LearningRateSchedule(Declared):
    """A learning rate per step; its declared keys are the config keys, in Keras's order."""

    def __call__(self, step: int) -> float:
        return float(self.rate(_f32(step)).item())

    def rate(self, step: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


SCHEDULES: Registry[LearningRateSchedule] = Registry("learning-rate schedule")


class _StepDecay(LearningRateSchedule):
    """The decays of `step / decay_steps` (floored if `staircase`) at `decay_rate`: Keras's
    ExponentialDecay and InverseTimeDecay share their config and their progress."""

    initial_learning_rate = _rate()
    decay_steps = _steps()
    decay_rate = number(min_value=0.0, keep_int=True)
    staircase = boolean(False)
    name = string(Derived(lambda cls: cls.__name__))

    def _progress(self, step: Tensor) -> Tensor:
        p = step / _f32(self.decay_steps)
        return torch.floor(p) if self.staircase else p


@SCHEDULES.add()
class ExponentialDecay(_StepDecay):
    """`lr0 * decay_rate ** (step / decay_steps)`, the exponent floored if `staircase`."""

    def rate(self, step: Tensor) -> Tensor:
        p = self._progress(step)
        return _f32(self.initial_learning_rate) * torch.pow(_f32(self.decay_rate), p)


def _element(value: Any, loc: Loc, *, integer: bool) -> Any:
    """A boundary (an integer step) or a value (a learning rate, finite and >= 0)."""
    if integer and isinstance(value, float) and value.is_integer():
        value = int(value)
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(loc, f"must be an integer step, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(loc, f"must be a number, got {value!r}")
    if not integer and not (math.isfinite(value) and value >= 0):
        raise ConfigError(loc, f"must be a finite learning rate >= 0, got {value!r}")
    return value


def _list(config: Mapping[str, Any], key: str, loc: Loc) -> list[Any]:
    value = config.get(key)
    if key not in config:
        raise ConfigError((*loc, key), "is required")
    if not isinstance(value, list | tuple):
        raise ConfigError((*loc, key), f"must be a list, got {value!r}")
    if len(value) > _MAX_PIECES:
        raise ConfigError((*loc, key), f"must have at most {_MAX_PIECES} entries")
    return list(value)


def _read_boundaries(config: Mapping[str, Any], key: str, loc: Loc) -> list[int]:
    given = _list(config, key, loc)
    boundaries = [_element(b, (*loc, key, i), integer=True) for i, b in enumerate(given)]
    for i in range(1, len(boundaries)):
        if boundaries[i] <= boundaries[i - 1]:
            raise ConfigError(
                (*loc, key, i),
                f"must be strictly increasing, got {boundaries[i - 1]} then {boundaries[i]}",
            )
    return boundaries


def _read_values(config: Mapping[str, Any], key: str, loc: Loc) -> list[float]:
    given = _list(config, key, loc)
    return [_element(v, (*loc, key, i), integer=False) for i, v in enumerate(given)]


@SCHEDULES.add()
class PiecewiseConstantDecay(LearningRateSchedule):
    """`values[i]` for `boundaries[i-1] < step <= boundaries[i]`."""

    boundaries = Key[list[int]](_read_boundaries)
    values = Key[list[float]](_read_values)
    name = string("PiecewiseConstant")

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        count, pieces = len(values["values"]), len(values["boundaries"]) + 1
        if count != pieces:
            raise ConfigError(
                (*loc, "values"),
                f"needs one more entry than boundaries ({pieces}), got {count}",
            )

    def __post_init__(self) -> None:
        self.boundaries, self.values = list(self.boundaries), list(self.values)

    def __call__(self, step: int) -> float:
        # Keras sums value * indicator over the pieces: exactly the one selected value.
        return float(_f32(self.values[bisect.bisect_left(self.boundaries, step)]).item())


@SCHEDULES.add()
class PolynomialDecay(LearningRateSchedule):
    """`(lr0 - end) * (1 - step / decay_steps) ** power + end`; the step is capped at
    `decay_steps`, or with `cycle` the period grows to the next multiple of `decay_steps`."""

    initial_learning_rate = _rate()
    decay_steps = _steps()
    end_learning_rate = _rate(0.0001)
    power = number(1.0, min_value=0.0, keep_int=True)
    cycle = boolean(False)
    name = string("PolynomialDecay")

    def rate(self, step: Tensor) -> Tensor:
        lr0 = _f32(self.initial_learning_rate)
        end = _f32(self.end_learning_rate)
        decay_steps = _f32(self.decay_steps)
        if self.cycle:
            # Keras divides by the Python number here, not by its float32 copy.
            multiplier = torch.where(step == 0, _f32(1.0), torch.ceil(step / self.decay_steps))
            decay_steps = decay_steps * multiplier
        else:
            step = torch.minimum(step, decay_steps)
        p = step / decay_steps
        return (lr0 - end) * torch.pow(1 - p, _f32(self.power)) + end


@SCHEDULES.add()
class InverseTimeDecay(_StepDecay):
    """`lr0 / (1 + decay_rate * step / decay_steps)`, the ratio floored if `staircase`."""

    def rate(self, step: Tensor) -> Tensor:
        p = self._progress(step)
        return _f32(self.initial_learning_rate) / (_f32(1.0) + _f32(self.decay_rate) * p)


def _cosine(step: Tensor, decay_steps: Tensor, alpha: float, lr: Tensor) -> Tensor:
    cosine = 0.5 * (1.0 + torch.cos(_f32(math.pi) * (step / decay_steps)))
    return lr * ((1 - alpha) * cosine + alpha)


@SCHEDULES.add()
class CosineDecay(LearningRateSchedule):
    """Cosine from `lr0` to `alpha * lr0` over `decay_steps`; with `warmup_target`, first a
    linear warmup from `lr0` to it over `warmup_steps`, then the cosine from the target."""

    initial_learning_rate = _rate()
    decay_steps = _steps()
    alpha = number(0.0, min_value=0.0, max_value=1.0, keep_int=True)
    name = string("CosineDecay")
    warmup_target = number_or_none(min_value=0.0, max_value=FLOAT32_MAX, keep_int=True)
    warmup_steps = number(0, min_value=0.0, keep_int=True)

    def rate(self, step: Tensor) -> Tensor:
        lr0 = _f32(self.initial_learning_rate)
        decay_steps = _f32(self.decay_steps)
        if self.warmup_target is None:
            return _cosine(torch.minimum(step, decay_steps), decay_steps, self.alpha, lr0)
        target = _f32(self.warmup_target)
        warmup = _f32(self.warmup_steps)
        step = torch.minimum(step, decay_steps + warmup)
        if step < warmup:
            return (target - lr0) * (step / warmup) + lr0
        return _cosine(step - warmup, decay_steps, self.alpha, target)


@SCHEDULES.add()
class CosineDecayRestarts(LearningRateSchedule):
    """SGDR: cosine periods, the i-th `first_decay_steps * t_mul**i` steps long and scaled by
    `m_mul**i`."""

    initial_learning_rate = _rate()
    first_decay_steps = _steps()
    # Below 1 the periods sum to a finite length, past which the rate is NaN.
    t_mul = number(2.0, min_value=1.0, keep_int=True)
    m_mul = number(1.0, min_value=0.0, keep_int=True)
    alpha = number(0.0, min_value=0.0, max_value=1.0, keep_int=True)
    name = string("SGDRDecay")

    def rate(self, step: Tensor) -> Tensor:
        alpha, t_mul, m_mul = _f32(self.alpha), _f32(self.t_mul), _f32(self.m_mul)
        fraction = step / _f32(self.first_decay_steps)
        if t_mul == 1.0:
            restart = torch.floor(fraction)
            fraction = fraction - restart
        else:
            restart = torch.floor(torch.log(1.0 - fraction * (1.0 - t_mul)) / torch.log(t_mul))
            done = (1.0 - torch.pow(t_mul, restart)) / (1.0 - t_mul)
            fraction = (fraction - done) / torch.pow(t_mul, restart)
        cosine = 0.5 * torch.pow(m_mul, restart) * (1.0 + torch.cos(_f32(math.pi) * fraction))
        return _f32(self.initial_learning_rate) * ((1 - alpha) * cosine + alpha)


def get(identifier: Any, loc: Loc) -> LearningRateSchedule:
    """A schedule from a `{class_name, config}` object (or an instance)."""
    if isinstance(identifier, LearningRateSchedule):
        return identifier
    cls, config, cloc = SCHEDULES.parse(identifier, loc)
    return cls.from_config(config, cloc)


def serialize(schedule: LearningRateSchedule) -> dict[str, Any]:
    """Keras's serialized form of a schedule, as an optimizer's config writes it."""
    return {
        "module": _MODULE,
        "class_name": SCHEDULES.canonical_name(type(schedule)),
        "config": schedule.get_config(),
        "registered_name": None,
    }
