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

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_axes, get_float
from app.engine.config.registry import Registry
from app.engine.weights.options import WeightOption, get_option

MODULE = "keras.constraints"
EPSILON = 1e-7  # Keras's backend.epsilon()

Axis = int | list[int]


def _number(config: Mapping[str, Any], key: str, loc: Loc, default: float) -> Any:
    """A non-negative number, returned as given (an int stays an int)."""
    get_float(config, key, loc, default, min_value=0.0)
    return config.get(key, default)


class Constraint(WeightOption):
    """A projection of a weight, built from a Keras config."""

    module = MODULE

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _Norm(Constraint):
    """A constraint on the norms of `w` along `axis` (Dense kernel: axis 0, one norm per unit)."""

    def __init__(self, loc: Loc, axis: Axis) -> None:
        super().__init__(loc)
        self.axis = axis
        self._dims = axis if isinstance(axis, int) else tuple(axis)

    def check_weight(self, shape: tuple[int, ...]) -> None:
        rank = len(shape)
        given = [self.axis] if isinstance(self.axis, int) else self.axis
        for a in given:
            if not -rank <= a < rank:
                raise ConfigError(
                    (*self.loc, "axis"), f"axis {a} is out of range for a weight of shape {shape}"
                )
        if len({a % rank for a in given}) != len(given):
            raise ConfigError((*self.loc, "axis"), f"names an axis twice: {given}")

    def norms(self, w: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.sum(torch.square(w), dim=self._dims, keepdim=True))


CONSTRAINTS: Registry[Constraint] = Registry("constraint")


@CONSTRAINTS.register("MaxNorm", "max_norm")
class MaxNorm(_Norm):
    """Scale each slice down to norm `max_value` (default 2) when it is longer."""

    class_name = "MaxNorm"
    keys = ("max_value", "axis")

    def __init__(self, loc: Loc, max_value: float, axis: Axis) -> None:
        super().__init__(loc, axis)
        self.max_value = max_value

    @classmethod
    def _read(cls, config: Mapping[str, Any], loc: Loc) -> MaxNorm:
        return cls(loc, _number(config, "max_value", loc, 2), get_axes(config, "axis", loc, 0))

    def get_config(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        norms = self.norms(w)
        desired = torch.clip(norms, 0, self.max_value)
        return w * (desired / (EPSILON + norms))


@CONSTRAINTS.register("MinMaxNorm", "min_max_norm")
class MinMaxNorm(_Norm):
    """Move each slice's norm toward `[min_value, max_value]`: to
    `rate * clip(norm) + (1 - rate) * norm` (rate 1 is a strict projection)."""

    class_name = "MinMaxNorm"
    keys = ("min_value", "max_value", "rate", "axis")

    def __init__(
        self, loc: Loc, min_value: float, max_value: float, rate: float, axis: Axis
    ) -> None:
        super().__init__(loc, axis)
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate

    @classmethod
    def _read(cls, config: Mapping[str, Any], loc: Loc) -> MinMaxNorm:
        low = _number(config, "min_value", loc, 0.0)
        high = _number(config, "max_value", loc, 1.0)
        if high < low:
            raise ConfigError((*loc, "max_value"), f"must be >= min_value ({low}), got {high}")
        rate = _number(config, "rate", loc, 1.0)
        if rate > 1:
            raise ConfigError((*loc, "rate"), f"must be in [0, 1], got {rate}")
        return cls(loc, low, high, rate, get_axes(config, "axis", loc, 0))

    def get_config(self) -> dict[str, Any]:
        return {
            "min_value": self.min_value,
            "max_value": self.max_value,
            "rate": self.rate,
            "axis": self.axis,
        }

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        norms = self.norms(w)
        clipped = torch.clip(norms, self.min_value, self.max_value)
        desired = self.rate * clipped + (1 - self.rate) * norms
        return w * (desired / (EPSILON + norms))


@CONSTRAINTS.register("NonNeg", "non_neg")
class NonNeg(Constraint):
    """Negative weights become 0."""

    class_name = "NonNeg"

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return torch.clamp_min(w, 0.0)


@CONSTRAINTS.register("UnitNorm", "unit_norm")
class UnitNorm(_Norm):
    """Each slice divided by its norm (plus epsilon)."""

    class_name = "UnitNorm"
    keys = ("axis",)

    @classmethod
    def _read(cls, config: Mapping[str, Any], loc: Loc) -> UnitNorm:
        return cls(loc, get_axes(config, "axis", loc, 0))

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return w / (EPSILON + self.norms(w))


def get(identifier: Any, loc: Loc) -> Constraint | None:
    """A constraint from a name, a `{class_name, config}` object (Keras's own module only), or
    None (no constraint)."""
    return get_option(CONSTRAINTS, identifier, loc)


__all__ = ["CONSTRAINTS", "Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "get"]
