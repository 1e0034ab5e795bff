"""Keras 3's Adam family on torch: Adam, AdamW, Adamax and Nadam, each rule written with the same
`torch._foreach_*` calls as Keras's torch-backend optimizers (`keras/src/backend/torch/optimizers/`,
`torch_<name>.py`) make, in the same order, so parameters match Keras to float32 rounding.
`app.engine.optimizers` registers them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_bool, get_float
from app.engine.optimizers.adaptive import step_count
from app.engine.optimizers.base import Optimizer, Slots, _fraction
from app.engine.scalars import scalar_like

Tensor = torch.Tensor


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


_ADAMW_WEIGHT_DECAY = 0.004


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
