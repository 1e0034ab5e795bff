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
from typing import Any, ClassVar

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_bool, get_float, get_str
from app.engine.config.registry import Registry, known_keys

Tensor = torch.Tensor
_MAX_PIECES = 1000
_MODULE = "keras.optimizers.schedules"
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def _f32(value: float) -> Tensor:
    return torch.tensor(value, dtype=torch.float32)


def _number(
    config: Mapping[str, Any], key: str, loc: Loc, default: Any = ..., **limits: Any
) -> Any:
    """A finite number, kept an int when given as one (Keras echoes a config as given)."""
    value = get_float(config, key, loc, *(() if default is ... else (default,)), **limits)
    raw = config.get(key, default)
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else value


def _rate(config: Mapping[str, Any], key: str, loc: Loc, default: Any = ...) -> Any:
    # A rate is a float32 in Keras: one past float32's range would be infinite.
    return _number(config, key, loc, default, min_value=0.0, max_value=FLOAT32_MAX)


def _steps(config: Mapping[str, Any], key: str, loc: Loc) -> Any:
    return _number(config, key, loc, min_value=0.0, min_exclusive=True)


class LearningRateSchedule:
    """A learning rate per step; `keys` are the config keys, in Keras's order."""

    keys: ClassVar[tuple[str, ...]]
    name: str

    def __call__(self, step: int) -> float:
        return float(self.rate(_f32(step)).item())

    def rate(self, step: Tensor) -> Tensor:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.keys}

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc) -> LearningRateSchedule:
        known_keys(config, cls.keys, loc)
        return cls(**cls._parse(config, loc))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


SCHEDULES: Registry[LearningRateSchedule] = Registry("learning-rate schedule")


class _StepDecay(LearningRateSchedule):
    """The decays of `step / decay_steps` (floored if `staircase`) at `decay_rate`: Keras's
    ExponentialDecay and InverseTimeDecay share their config and their progress."""

    keys = ("initial_learning_rate", "decay_steps", "decay_rate", "staircase", "name")

    def __init__(self, initial_learning_rate: float, decay_steps: float, decay_rate: float,
                 staircase: bool = False, name: str | None = None) -> None:  # fmt: skip
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.decay_rate, self.staircase = decay_rate, staircase
        self.name = type(self).__name__ if name is None else name

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            "initial_learning_rate": _rate(config, "initial_learning_rate", loc),
            "decay_steps": _steps(config, "decay_steps", loc),
            "decay_rate": _number(config, "decay_rate", loc, min_value=0.0),
            "staircase": get_bool(config, "staircase", loc, False),
            "name": get_str(config, "name", loc, cls.__name__),
        }

    def _progress(self, step: Tensor) -> Tensor:
        p = step / _f32(self.decay_steps)
        return torch.floor(p) if self.staircase else p


@SCHEDULES.register("ExponentialDecay")
class ExponentialDecay(_StepDecay):
    """`lr0 * decay_rate ** (step / decay_steps)`, the exponent floored if `staircase`."""

    def rate(self, step: Tensor) -> Tensor:
        p = self._progress(step)
        return _f32(self.initial_learning_rate) * torch.pow(_f32(self.decay_rate), p)


@SCHEDULES.register("PiecewiseConstantDecay")
class PiecewiseConstantDecay(LearningRateSchedule):
    """`values[i]` for `boundaries[i-1] < step <= boundaries[i]`."""

    keys = ("boundaries", "values", "name")

    def __init__(self, boundaries: list[int], values: list[float],
                 name: str = "PiecewiseConstant") -> None:  # fmt: skip
        self.boundaries, self.values, self.name = list(boundaries), list(values), name

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        boundaries = [_element(b, (*loc, "boundaries", i), integer=True)
                      for i, b in enumerate(_list(config, "boundaries", loc))]  # fmt: skip
        for i in range(1, len(boundaries)):
            if boundaries[i] <= boundaries[i - 1]:
                raise ConfigError(
                    (*loc, "boundaries", i),
                    f"must be strictly increasing, got {boundaries[i - 1]} then {boundaries[i]}",
                )
        values = [_element(v, (*loc, "values", i), integer=False)
                  for i, v in enumerate(_list(config, "values", loc))]  # fmt: skip
        if len(values) != len(boundaries) + 1:
            raise ConfigError((*loc, "values"), f"needs one more entry than boundaries "
                              f"({len(boundaries) + 1}), got {len(values)}")  # fmt: skip
        return {"boundaries": boundaries, "values": values,
                "name": get_str(config, "name", loc, "PiecewiseConstant")}  # fmt: skip

    def __call__(self, step: int) -> float:
        # Keras sums value * indicator over the pieces: exactly the one selected value.
        return float(_f32(self.values[bisect.bisect_left(self.boundaries, step)]).item())


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


@SCHEDULES.register("PolynomialDecay")
class PolynomialDecay(LearningRateSchedule):
    """`(lr0 - end) * (1 - step / decay_steps) ** power + end`; the step is capped at
    `decay_steps`, or with `cycle` the period grows to the next multiple of `decay_steps`."""

    keys = ("initial_learning_rate", "decay_steps", "end_learning_rate", "power", "cycle", "name")

    def __init__(self, initial_learning_rate: float, decay_steps: float,
                 end_learning_rate: float = 0.0001, power: float = 1.0, cycle: bool = False,
                 name: str = "PolynomialDecay") -> None:  # fmt: skip
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.end_learning_rate, self.power = end_learning_rate, power
        self.cycle, self.name = cycle, name

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            "initial_learning_rate": _rate(config, "initial_learning_rate", loc),
            "decay_steps": _steps(config, "decay_steps", loc),
            "end_learning_rate": _rate(config, "end_learning_rate", loc, 0.0001),
            "power": _number(config, "power", loc, 1.0, min_value=0.0),
            "cycle": get_bool(config, "cycle", loc, False),
            "name": get_str(config, "name", loc, "PolynomialDecay"),
        }

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


@SCHEDULES.register("InverseTimeDecay")
class InverseTimeDecay(_StepDecay):
    """`lr0 / (1 + decay_rate * step / decay_steps)`, the ratio floored if `staircase`."""

    def rate(self, step: Tensor) -> Tensor:
        p = self._progress(step)
        return _f32(self.initial_learning_rate) / (_f32(1.0) + _f32(self.decay_rate) * p)


def _cosine(step: Tensor, decay_steps: Tensor, alpha: float, lr: Tensor) -> Tensor:
    cosine = 0.5 * (1.0 + torch.cos(_f32(math.pi) * (step / decay_steps)))
    return lr * ((1 - alpha) * cosine + alpha)


@SCHEDULES.register("CosineDecay")
class CosineDecay(LearningRateSchedule):
    """Cosine from `lr0` to `alpha * lr0` over `decay_steps`; with `warmup_target`, first a
    linear warmup from `lr0` to it over `warmup_steps`, then the cosine from the target."""

    keys = ("initial_learning_rate", "decay_steps", "alpha", "name", "warmup_target",
            "warmup_steps")  # fmt: skip

    def __init__(self, initial_learning_rate: float, decay_steps: float, alpha: float = 0.0,
                 name: str = "CosineDecay", warmup_target: float | None = None,
                 warmup_steps: float = 0) -> None:  # fmt: skip
        self.initial_learning_rate, self.decay_steps = initial_learning_rate, decay_steps
        self.alpha, self.name = alpha, name
        self.warmup_target, self.warmup_steps = warmup_target, warmup_steps

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            "initial_learning_rate": _rate(config, "initial_learning_rate", loc),
            "decay_steps": _steps(config, "decay_steps", loc),
            "alpha": _number(config, "alpha", loc, 0.0, min_value=0.0, max_value=1.0),
            "name": get_str(config, "name", loc, "CosineDecay"),
            "warmup_target": _rate(config, "warmup_target", loc, None),
            "warmup_steps": _number(config, "warmup_steps", loc, 0, min_value=0.0),
        }

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


@SCHEDULES.register("CosineDecayRestarts")
class CosineDecayRestarts(LearningRateSchedule):
    """SGDR: cosine periods, the i-th `first_decay_steps * t_mul**i` steps long and scaled by
    `m_mul**i`."""

    keys = ("initial_learning_rate", "first_decay_steps", "t_mul", "m_mul", "alpha", "name")

    def __init__(self, initial_learning_rate: float, first_decay_steps: float,
                 t_mul: float = 2.0, m_mul: float = 1.0, alpha: float = 0.0,
                 name: str = "SGDRDecay") -> None:  # fmt: skip
        self.initial_learning_rate = initial_learning_rate
        self.first_decay_steps = first_decay_steps
        self.t_mul, self.m_mul, self.alpha, self.name = t_mul, m_mul, alpha, name

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            "initial_learning_rate": _rate(config, "initial_learning_rate", loc),
            "first_decay_steps": _steps(config, "first_decay_steps", loc),
            # Below 1 the periods sum to a finite length, past which the rate is NaN.
            "t_mul": _number(config, "t_mul", loc, 2.0, min_value=1.0),
            "m_mul": _number(config, "m_mul", loc, 1.0, min_value=0.0),
            "alpha": _number(config, "alpha", loc, 0.0, min_value=0.0, max_value=1.0),
            "name": get_str(config, "name", loc, "SGDRDecay"),
        }

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
