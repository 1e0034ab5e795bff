"""Keras 3's Adam family on torch: Adam, AdamW, Adamax and Nadam, each rule written with the same
`torch._foreach_*` calls as Keras's torch-backend optimizers (`keras/src/backend/torch/optimizers/`,
`torch_<name>.py`) make, in the same order, so parameters match Keras to float32 rounding.
`app.engine.optimizers` registers them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.declared import Key, boolean, number
from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_float
from app.engine.optimizers.adaptive import epsilon_key, step_count
from app.engine.optimizers.base import Optimizer, Slots, fraction
from app.engine.scalars import scalar_like

Tensor = torch.Tensor


class Adam(Optimizer):
    """Keras Adam: bias corrections folded into the step size (the paper's epsilon-hat form)."""

    default_learning_rate = 0.001
    beta_1 = fraction(0.9)
    beta_2 = fraction(0.999)
    epsilon = epsilon_key()
    amsgrad = boolean(False)

    def slot_names(self) -> tuple[str, ...]:
        return ("m", "v", "v_hat") if self.amsgrad else ("m", "v")

    def _update(self, grads: list[Tensor], params: list[Tensor], slots: Slots) -> None:
        like = params[0]
        lr = scalar_like(self.learning_rate, like)
        step = step_count(self.iterations + 1, like)
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
        # Keras's m * alpha / (sqrt(v) + epsilon), op for op; the last two operations go in
        # place on the fresh results of the first two (the same kernels round the same), so a
        # step allocates three lists of temporaries rather than five.
        denominators = torch._foreach_sqrt(v)
        torch._foreach_add_(denominators, self.epsilon)
        steps = torch._foreach_mul(m, alpha)
        torch._foreach_div_(steps, denominators)
        torch._foreach_add_(params, steps, alpha=-1)


def _read_weight_decay(config: Mapping[str, Any], key: str, loc: Loc, default: float) -> float:
    if key in config and config[key] is None:
        raise ConfigError((*loc, key), "must be a number >= 0 for AdamW, got None")
    return float(get_float(config, key, loc, default, min_value=0.0))


class AdamW(Adam):
    """Keras AdamW: Adam with the base's decoupled weight decay on by default (0.004); Keras
    refuses a null weight_decay here."""

    weight_decay: Key[float | None] = Key(_read_weight_decay, 0.004)

    def __post_init__(self) -> None:
        if self.weight_decay is None:
            raise ValueError("AdamW needs a weight_decay, got None")


class Adamax(Optimizer):
    """Keras Adamax: Adam with an infinity-norm second moment; only the first moment is
    bias-corrected."""

    default_learning_rate = 0.001
    beta_1 = fraction(0.9)
    beta_2 = number(0.999, min_value=0.0, max_value=1.0)
    epsilon = epsilon_key()

    def slot_names(self) -> tuple[str, ...]:
        return ("momentum", "norm")

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
    beta_1 = number(0.9, min_value=0.0, max_value=1.0)
    beta_2 = fraction(0.999)
    epsilon = epsilon_key()

    def __post_init__(self) -> None:
        self._u_product = torch.ones(())

    def slot_names(self) -> tuple[str, ...]:
        return ("momentum", "velocity")

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
