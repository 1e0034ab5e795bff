"""Keras 3's SGD, RMSprop and Adam on torch: each optimizer's hyperparameters, their parsing,
its slots and its update rule, written with the same `torch._foreach_*` calls, in the same order,
as Keras's torch-backend optimizers (`keras/src/backend/torch/optimizers/`), so parameters match
Keras to float32 rounding. `app.engine.optimizers` registers them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.errors import ConfigError, Loc
from app.engine.optimizer_base import Optimizer, Slots
from app.engine.params import get_bool, get_float
from app.engine.scalars import scalar_like

Tensor = torch.Tensor


def _fraction(config: Mapping[str, Any], key: str, loc: Loc, default: float) -> float:
    value = float(get_float(config, key, loc, default, min_value=0.0, max_value=1.0))
    if value == 1.0:
        raise ConfigError((*loc, key), "must be < 1, got 1.0")
    return value


class SGD(Optimizer):
    """Keras SGD: the velocity holds learning-rate-scaled steps (torch.optim.SGD's does not)."""

    default_learning_rate = 0.01
    hyperparameters = {"momentum": 0.0, "nesterov": False}
    momentum: float
    nesterov: bool

    def slot_names(self) -> tuple[str, ...]:
        return ("momentum",) if self.momentum != 0 else ()

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            "momentum": get_float(config, "momentum", loc, 0.0, min_value=0.0, max_value=1.0),
            "nesterov": get_bool(config, "nesterov", loc, False),
        }

    def _update(self, grads: list[Tensor], params: list[Tensor], slots: Slots) -> None:
        lr = self.learning_rate
        if self.momentum == 0:
            torch._foreach_add_(params, grads, alpha=-lr)
            return
        velocities = slots["momentum"]
        torch._foreach_mul_(velocities, self.momentum)
        torch._foreach_add_(velocities, grads, alpha=-lr)
        if self.nesterov:
            torch._foreach_add_(params, grads, alpha=-lr)
            torch._foreach_add_(params, velocities, alpha=self.momentum)
        else:
            torch._foreach_add_(params, velocities)


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


class Adam(Optimizer):
    """Keras Adam: bias corrections folded into the step size (the paper's epsilon-hat form)."""

    default_learning_rate = 0.001
    hyperparameters = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False}
    beta_1: float
    beta_2: float
    epsilon: float
    amsgrad: bool

    def slot_names(self) -> tuple[str, ...]:
        return ("m", "v", "v_hat") if self.amsgrad else ("m", "v")

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            "beta_1": _fraction(config, "beta_1", loc, 0.9),
            "beta_2": _fraction(config, "beta_2", loc, 0.999),
            "epsilon": get_float(config, "epsilon", loc, 1e-7, min_value=0.0),
            "amsgrad": get_bool(config, "amsgrad", loc, False),
        }

    def _update(self, grads: list[Tensor], params: list[Tensor], slots: Slots) -> None:
        like = params[0]
        lr = scalar_like(self.learning_rate, like)
        # New every step, so not a cached scalar.
        step = torch.full((), float(self.iterations + 1), dtype=like.dtype, device=like.device)
        beta_1_power = torch.pow(scalar_like(self.beta_1, like), step)
        beta_2_power = torch.pow(scalar_like(self.beta_2, like), step)
        alpha = lr * torch.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        m, v = slots["m"], slots["v"]
        torch._foreach_mul_(m, self.beta_1)
        torch._foreach_add_(m, grads, alpha=1 - self.beta_1)
        torch._foreach_mul_(v, self.beta_2)
        torch._foreach_add_(v, torch._foreach_mul(grads, grads), alpha=1 - self.beta_2)
        if self.amsgrad:
            torch._foreach_maximum_(slots["v_hat"], v)
            v = slots["v_hat"]
        steps = torch._foreach_div(
            torch._foreach_mul(m, alpha), torch._foreach_add(torch._foreach_sqrt(v), self.epsilon)
        )
        torch._foreach_add_(params, steps, alpha=-1)
