"""Keras 3's per-coordinate adaptive-rate optimizers on torch: RMSprop, Adagrad and Adadelta (and
the accumulator base Adagrad and Ftrl share), each rule written with the same `torch._foreach_*`
calls as Keras's torch-backend optimizers (`keras/src/backend/torch/optimizers/`, `torch_<name>.py`)
make, in the same order, so parameters match Keras to float32 rounding. `app.engine.optimizers`
registers them."""

from __future__ import annotations

import torch

from app.engine.config.declared import Key, boolean, number
from app.engine.optimizers.base import Optimizer, Slots
from app.engine.scalars import scalar_like

Tensor = torch.Tensor


def step_count(value: int, like: Tensor) -> Tensor:
    """A step number as a 0-d float tensor beside `like` (Keras casts its int step count to the
    variables' dtype). New every step, so not a cached scalar."""
    return torch.full((), float(value), dtype=like.dtype, device=like.device)


def epsilon_key() -> Key[float]:
    return number(1e-7, min_value=0.0)


def initial_accumulator_key() -> Key[float]:
    # Keras takes a negative start too; its square root can then be NaN.
    return number(0.1, min_value=0.0)


class InitialAccumulator(Optimizer):
    """An optimizer whose "accumulator" slot starts at `initial_accumulator_value` (a key each
    subclass declares, where Keras's order puts it), not zero."""

    def build(self, params: list[torch.nn.Parameter]) -> None:
        fresh = self._params is None
        super().build(params)
        if fresh:
            start = self._value("initial_accumulator_value")
            with torch.no_grad():
                for accumulator in self._slots["accumulator"]:
                    accumulator.fill_(start)


class RMSprop(Optimizer):
    """Keras RMSprop: epsilon inside the square root; optional centring and momentum."""

    default_learning_rate = 0.001
    rho = number(0.9, min_value=0.0, max_value=1.0)
    momentum = number(0.0, min_value=0.0)
    epsilon = epsilon_key()
    centered = boolean(False)

    def slot_names(self) -> tuple[str, ...]:
        momentum = ("momentum",) if self.momentum > 0 else ()
        return ("velocity", *momentum, *(("average_gradient",) if self.centered else ()))

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
    initial_accumulator_value = initial_accumulator_key()
    epsilon = epsilon_key()

    def slot_names(self) -> tuple[str, ...]:
        return ("accumulator",)

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
    rho = number(0.95, min_value=0.0, max_value=1.0)
    epsilon = epsilon_key()

    def slot_names(self) -> tuple[str, ...]:
        return ("accumulated_grad", "accumulated_delta_var")

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
