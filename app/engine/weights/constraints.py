"""Keras's weight constraints: the CONSTRAINTS registry and `get`.

A constraint projects a weight after every optimizer step (`w <- constraint(w)`). The norms are
Keras's `sqrt(sum(w², axis))` with `epsilon = 1e-7` added to the divisor, computed in Keras's
order so a constrained fit keeps Keras's numbers. Names are those Keras 3.15's
`constraints.get` accepts: the class names and their snake-case forms. Numbers are written back
as they were given (Keras stores them as given: `MaxNorm()` writes `max_value: 2`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.declared import Key, number
from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_axes, get_float
from app.engine.config.registry import Registry
from app.engine.weights.options import WeightOption, get_option

MODULE = "keras.constraints"
EPSILON = 1e-7  # Keras's backend.epsilon()

Axis = int | list[int]


def _axis() -> Key[Axis]:
    """The axis (or axes) the norms are taken along; Keras writes it last."""
    return Key(get_axes, 0)


def _read_rate(config: Mapping[str, Any], key: str, loc: Loc, default: float) -> Any:
    get_float(config, key, loc, default, min_value=0.0)
    rate = config.get(key, default)
    if rate > 1:
        raise ConfigError((*loc, key), f"must be in [0, 1], got {rate}")
    return rate


class Constraint(WeightOption):
    """A projection of a weight, built from a Keras config."""

    module = MODULE

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _Norm(Constraint):
    """A constraint on the norms of `w` along `axis` (Dense kernel: axis 0, one norm per unit);
    each subclass declares `axis` last, in Keras's order."""

    @property
    def _axis(self) -> Axis:
        axis: Axis = self.__dict__["axis"]
        return axis

    def check_weight(self, shape: tuple[int, ...]) -> None:
        rank = len(shape)
        given = [self._axis] if isinstance(self._axis, int) else self._axis
        for a in given:
            if not -rank <= a < rank:
                raise ConfigError(
                    (*self.loc, "axis"), f"axis {a} is out of range for a weight of shape {shape}"
                )
        if len({a % rank for a in given}) != len(given):
            raise ConfigError((*self.loc, "axis"), f"names an axis twice: {given}")

    def norms(self, w: torch.Tensor) -> torch.Tensor:
        dims = self._axis if isinstance(self._axis, int) else tuple(self._axis)
        return torch.sqrt(torch.sum(torch.square(w), dim=dims, keepdim=True))


CONSTRAINTS: Registry[Constraint] = Registry("constraint")


@CONSTRAINTS.add("max_norm")
class MaxNorm(_Norm):
    """Scale each slice down to norm `max_value` (default 2) when it is longer."""

    max_value = number(2, min_value=0.0, keep_int=True)
    axis = _axis()

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        norms = self.norms(w)
        desired = torch.clip(norms, 0, self.max_value)
        return w * (desired / (EPSILON + norms))


@CONSTRAINTS.add("min_max_norm")
class MinMaxNorm(_Norm):
    """Move each slice's norm toward `[min_value, max_value]`: to
    `rate * clip(norm) + (1 - rate) * norm` (rate 1 is a strict projection)."""

    min_value = number(0.0, min_value=0.0, keep_int=True)
    max_value = number(1.0, min_value=0.0, keep_int=True)
    rate = Key[float](_read_rate, 1.0)
    axis = _axis()

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        low, high = values["min_value"], values["max_value"]
        if high < low:
            raise ConfigError((*loc, "max_value"), f"must be >= min_value ({low}), got {high}")

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        norms = self.norms(w)
        clipped = torch.clip(norms, self.min_value, self.max_value)
        desired = self.rate * clipped + (1 - self.rate) * norms
        return w * (desired / (EPSILON + norms))


@CONSTRAINTS.add("non_neg")
class NonNeg(Constraint):
    """Negative weights become 0."""

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return torch.clamp_min(w, 0.0)


@CONSTRAINTS.add("unit_norm")
class UnitNorm(_Norm):
    """Each slice divided by its norm (plus epsilon)."""

    axis = _axis()

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return w / (EPSILON + self.norms(w))


def get(identifier: Any, loc: Loc) -> Constraint | None:
    """A constraint from a name, a `{class_name, config}` object (Keras's own module only), or
    None (no constraint)."""
    return get_option(CONSTRAINTS, identifier, loc)


__all__ = ["CONSTRAINTS", "Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "get"]
