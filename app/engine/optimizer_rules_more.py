"""Keras 3's AdamW, Adagrad, Adadelta, Adamax, Nadam and Lion on torch: the optimizers for which
Keras's torch backend has its own `torch._foreach_*` update (`torch_<name>.py`). Each rule makes
the same calls in the same order, with the same Python-float or float32-tensor operands, so
parameters match Keras to float32 rounding. `app.engine.optimizers` registers them; Ftrl,
Adafactor and Lamb, which Keras runs one variable at a time, are in
`app.engine.optimizer_rules_tensorwise`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.errors import ConfigError, Loc
from app.engine.optimizer_base import Optimizer, Slots
from app.engine.optimizer_rules import Adam, _fraction
from app.engine.params import get_float
from app.engine.scalars import scalar_like

Tensor = torch.Tensor

_ADAMW_WEIGHT_DECAY = 0.004


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


class AdamW(Adam):
    """Keras AdamW: Adam with the base's decoupled weight decay on by default (0.004); Keras
    refuses a null weight_decay here."""

    def __init__(
        self,
        learning_rate: float | None = None,
        *,
        weight_decay: float | None = _ADAMW_WEIGHT_DECAY,
        **kwargs: Any,
    ) -> None:
        if weight_decay is None:
            raise ValueError("AdamW needs a weight_decay, got None")
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc) -> Optimizer:
        if "weight_decay" in config and config["weight_decay"] is None:
            raise ConfigError((*loc, "weight_decay"), "must be a number >= 0 for AdamW, got None")
        return super().from_config({"weight_decay": _ADAMW_WEIGHT_DECAY, **config}, loc)


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


class Adamax(Optimizer):
    """Keras Adamax: Adam with an infinity-norm second moment; only the first moment is
    bias-corrected."""

    default_learning_rate = 0.001
    hyperparameters = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    beta_1: float
    beta_2: float
    epsilon: float

    def slot_names(self) -> tuple[str, ...]:
        return ("momentum", "norm")

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            "beta_1": _fraction(config, "beta_1", loc, 0.9),
            "beta_2": get_float(config, "beta_2", loc, 0.999, min_value=0.0, max_value=1.0),
            "epsilon": get_float(config, "epsilon", loc, 1e-7, min_value=0.0),
        }

    def _update(self, grads: list[Tensor], params: list[Tensor], slots: Slots) -> None:
        like = params[0]
        lr = scalar_like(self.learning_rate, like)
        beta_1_power = torch.pow(
            scalar_like(self.beta_1, like), step_count(self.iterations + 1, like)
        )
        m, u = slots["momentum"], slots["norm"]
        torch._foreach_mul_(m, self.beta_1)
        torch._foreach_add_(m, grads, alpha=1 - self.beta_1)
        torch._foreach_mul_(u, self.beta_2)
        torch._foreach_maximum_(u, torch._foreach_abs(grads))
        denominators = torch._foreach_mul(torch._foreach_add(u, self.epsilon), 1 - beta_1_power)
        torch._foreach_add_(
            params, torch._foreach_div(torch._foreach_mul(m, lr), denominators), alpha=-1
        )


class Nadam(Optimizer):
    """Keras Nadam: Adam with Nesterov momentum and Dozat's momentum schedule
    `mu_t = beta_1 (1 - 0.5 * 0.96^t)`; the running product of the `mu_t` is optimizer state
    (saved with the slots as `nadam.u_product`)."""

    default_learning_rate = 0.001
    hyperparameters = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    beta_1: float
    beta_2: float
    epsilon: float

    def __init__(self, learning_rate: float | None = None, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        self._u_product = torch.ones(())

    def slot_names(self) -> tuple[str, ...]:
        return ("momentum", "velocity")

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            "beta_1": get_float(config, "beta_1", loc, 0.9, min_value=0.0, max_value=1.0),
            "beta_2": _fraction(config, "beta_2", loc, 0.999),
            "epsilon": get_float(config, "epsilon", loc, 1e-7, min_value=0.0),
        }

    def build(self, params: list[torch.nn.Parameter]) -> None:
        fresh = self._params is None
        super().build(params)
        if fresh and params:
            self._u_product = torch.ones((), dtype=params[0].dtype, device=params[0].device)

    def _named_slots(self) -> dict[str, Tensor]:
        return {**super()._named_slots(), "nadam.u_product": self._u_product}

    def _momentum_factor(self, beta_1: Tensor, step: Tensor) -> Tensor:
        decay = scalar_like(0.96, beta_1)
        return beta_1 * (1.0 - 0.5 * torch.pow(decay, step))

    def _update(self, grads: list[Tensor], params: list[Tensor], slots: Slots) -> None:
        like = params[0]
        lr = scalar_like(self.learning_rate, like)
        step = step_count(self.iterations + 1, like)
        beta_1 = scalar_like(self.beta_1, like)
        u_t = self._momentum_factor(beta_1, step)
        u_next = self._momentum_factor(beta_1, step_count(self.iterations + 2, like))
        u_product = self._u_product * u_t
        u_product_next = u_product * u_next
        beta_2_power = torch.pow(scalar_like(self.beta_2, like), step)
        self._u_product.copy_(u_product)

        m, v = slots["momentum"], slots["velocity"]
        torch._foreach_mul_(m, self.beta_1)
        torch._foreach_add_(m, grads, alpha=1 - self.beta_1)
        torch._foreach_mul_(v, self.beta_2)
        torch._foreach_add_(v, torch._foreach_mul(grads, grads), alpha=1 - self.beta_2)
        # Keras divides by these two as host numbers (a sync); dividing by the same float32
        # values held on the device rounds the same.
        m_hat = torch._foreach_add(
            torch._foreach_div(torch._foreach_mul(m, u_next), 1 - u_product_next),
            torch._foreach_div(torch._foreach_mul(grads, 1 - u_t), 1 - u_product),
        )
        v_hat = torch._foreach_div(v, 1 - beta_2_power)
        steps = torch._foreach_div(
            torch._foreach_mul(m_hat, lr),
            torch._foreach_add(torch._foreach_sqrt(v_hat), self.epsilon),
        )
        torch._foreach_add_(params, steps, alpha=-1)


class Lion(Optimizer):
    """Keras Lion: the sign of an interpolated momentum is the step; the momentum is updated
    afterwards with beta_2."""

    default_learning_rate = 0.001
    hyperparameters = {"beta_1": 0.9, "beta_2": 0.99}
    beta_1: float
    beta_2: float

    def slot_names(self) -> tuple[str, ...]:
        return ("momentum",)

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            # Keras: with beta_1 = 0 Lion degenerates to signSGD, so (0, 1].
            "beta_1": get_float(
                config, "beta_1", loc, 0.9, min_value=0.0, min_exclusive=True, max_value=1.0
            ),
            "beta_2": get_float(config, "beta_2", loc, 0.99, min_value=0.0, max_value=1.0),
        }

    def _update(self, grads: list[Tensor], params: list[Tensor], slots: Slots) -> None:
        lr = scalar_like(self.learning_rate, params[0])
        m = slots["momentum"]
        directions = torch._foreach_mul(m, self.beta_1)
        torch._foreach_add_(directions, grads, alpha=1 - self.beta_1)
        torch._foreach_sign_(directions)
        torch._foreach_add_(params, torch._foreach_mul(directions, lr), alpha=-1)
        torch._foreach_mul_(m, self.beta_2)
        torch._foreach_add_(m, grads, alpha=1 - self.beta_2)
