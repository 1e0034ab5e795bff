"""Keras 3's per-coordinate adaptive-rate optimizers on torch: RMSprop, Adagrad and Adadelta (and
the accumulator base Adagrad and Ftrl share), each rule written with the same `torch._foreach_*`
calls as Keras's torch-backend optimizers (`keras/src/backend/torch/optimizers/`, `torch_<name>.py`)
make, in the same order, so parameters match Keras to float32 rounding. `app.engine.optimizers`
registers them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import Loc
from app.engine.config.readers import get_bool, get_float
from app.engine.optimizers.base import Optimizer, Slots
from app.engine.scalars import scalar_like

Tensor = torch.Tensor


def step_count(value: int, like: Tensor) -> Tensor:
    """A step number as a 0-d float tensor beside `like` (Keras casts its int step count to the
    variables' dtype). New every step, so not a cached scalar."""
    return torch.full((), float(value), dtype=like.dtype, device=like.device)


class InitialAccumulator(Optimizer):
    """An optimizer whose "accumulator" slot starts at `initial_accumulator_value`, not zero."""

    initial_accumulator_value: float

    def build(self, params: list[torch.nn.Parameter]) -> None:
        fresh = self._params is None
        super().build(params)
        if fresh:
            with torch.no_grad():
                for accumulator in self._slots["accumulator"]:
                    accumulator.fill_(self.initial_accumulator_value)


class RMSprop(Optimizer):
    """Keras RMSprop: epsilon inside the square root; optional centring and momentum."""

    default_learning_rate = 0.001
    hyperparameters = {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False}
    rho: float
    momentum: float
    epsilon: float
    centered: bool

    def slot_names(self) -> tuple[str, ...]:
        momentum = ("momentum",) if self.momentum > 0 else ()
        return ("velocity", *momentum, *(("average_gradient",) if self.centered else ()))

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            "rho": get_float(config, "rho", loc, 0.9, min_value=0.0, max_value=1.0),
            "momentum": get_float(config, "momentum", loc, 0.0, min_value=0.0),
            "epsilon": get_float(config, "epsilon", loc, 1e-7, min_value=0.0),
            "centered": get_bool(config, "centered", loc, False),
        }

    def _update(self, grads: list[Tensor], params: list[Tensor], slots: Slots) -> None:
        lr = scalar_like(self.learning_rate, params[0])
        rho = self.rho
        velocities = slots["velocity"]
        torch._foreach_mul_(velocities, rho)
        torch._foreach_add_(velocities, torch._foreach_mul(grads, grads), alpha=1 - rho)
        denominators = torch._foreach_add(velocities, self.epsilon)
        if self.centered:
            averages = slots["average_gradient"]
            torch._foreach_mul_(averages, rho)
            torch._foreach_add_(averages, grads, alpha=1 - rho)
            torch._foreach_add_(denominators, torch._foreach_mul(averages, averages), alpha=-1)
        torch._foreach_sqrt_(denominators)
        increments = torch._foreach_div(torch._foreach_mul(grads, lr), denominators)
        if self.momentum > 0:
            moments = slots["momentum"]
            torch._foreach_mul_(moments, self.momentum)
            torch._foreach_add_(moments, increments)
            torch._foreach_add_(params, moments, alpha=-1)
        else:
            torch._foreach_add_(params, increments, alpha=-1)


class Adagrad(InitialAccumulator):
    """Keras Adagrad: squared gradients summed from `initial_accumulator_value`; epsilon inside
    the square root."""

    default_learning_rate = 0.001
    hyperparameters = {"initial_accumulator_value": 0.1, "epsilon": 1e-7}
    epsilon: float

    def slot_names(self) -> tuple[str, ...]:
        return ("accumulator",)

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            # Keras takes a negative start too; its square root can then be NaN.
            "initial_accumulator_value": get_float(
                config, "initial_accumulator_value", loc, 0.1, min_value=0.0
            ),
            "epsilon": get_float(config, "epsilon", loc, 1e-7, min_value=0.0),
        }

    def _update(self, grads: list[Tensor], params: list[Tensor], slots: Slots) -> None:
        lr = scalar_like(self.learning_rate, params[0])
        accumulators = slots["accumulator"]
        torch._foreach_add_(accumulators, torch._foreach_mul(grads, grads))
        denominators = torch._foreach_sqrt(torch._foreach_add(accumulators, self.epsilon))
        steps = torch._foreach_div(torch._foreach_mul(grads, lr), denominators)
        torch._foreach_add_(params, steps, alpha=-1)


class Adadelta(Optimizer):
    """Keras Adadelta: the step is the ratio of two running RMS values, then scaled by the
    learning rate (0.001 by default in Keras, not the paper's 1.0)."""

    default_learning_rate = 0.001
    hyperparameters = {"rho": 0.95, "epsilon": 1e-7}
    rho: float
    epsilon: float

    def slot_names(self) -> tuple[str, ...]:
        return ("accumulated_grad", "accumulated_delta_var")

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            "rho": get_float(config, "rho", loc, 0.95, min_value=0.0, max_value=1.0),
            "epsilon": get_float(config, "epsilon", loc, 1e-7, min_value=0.0),
        }

    def _rms(self, values: list[Tensor]) -> list[Tensor]:
        return list(torch._foreach_sqrt(torch._foreach_add(values, self.epsilon)))

    def _update(self, grads: list[Tensor], params: list[Tensor], slots: Slots) -> None:
        rho = self.rho
        grad_sq, delta_sq = slots["accumulated_grad"], slots["accumulated_delta_var"]
        torch._foreach_mul_(grad_sq, rho)
        torch._foreach_add_(grad_sq, torch._foreach_mul(grads, grads), alpha=1 - rho)
        deltas = torch._foreach_div(
            torch._foreach_mul(self._rms(delta_sq), grads), self._rms(grad_sq)
        )
        torch._foreach_mul_(deltas, -1)
        torch._foreach_mul_(delta_sq, rho)
        torch._foreach_add_(delta_sq, torch._foreach_mul(deltas, deltas), alpha=1 - rho)
        # Keras passes its float32 rate tensor as alpha, which torch reads as this same number.
        torch._foreach_add_(params, deltas, alpha=self.learning_rate)
