"""Keras 3's Lion on torch: its hyperparameters, their parsing, its slots and its update rule,
written with the same `torch._foreach_*` calls as Keras's torch-backend optimizers
(`keras/src/backend/torch/optimizers/`, `torch_<name>.py`) make, in the same order, so parameters
match Keras to float32 rounding. `app.engine.optimizers` registers it."""

from __future__ import annotations

import torch

from app.engine.config.declared import number
from app.engine.optimizers.base import Optimizer, Slots
from app.engine.scalars import scalar_like

Tensor = torch.Tensor


class Lion(Optimizer):
    """Keras Lion: the sign of an interpolated momentum is the step; the momentum is updated
    afterwards with beta_2."""

    default_learning_rate = 0.001
    # Keras: with beta_1 = 0 Lion degenerates to signSGD, so (0, 1].
    beta_1 = number(0.9, min_value=0.0, min_exclusive=True, max_value=1.0)
    beta_2 = number(0.99, min_value=0.0, max_value=1.0)

    def slot_names(self) -> tuple[str, ...]:
        return ("momentum",)

    def _update(self, grads: list[Tensor], params: list[Tensor], slots: Slots) -> None:
        lr = scalar_like(self.learning_rate, params[0])
        m = slots["momentum"]
        directions = torch._foreach_mul(m, self.beta_1)
        torch._foreach_add_(directions, grads, alpha=1 - self.beta_1)
        torch._foreach_sign_(directions)
        torch._foreach_add_(params, torch._foreach_mul(directions, lr), alpha=-1)
        torch._foreach_mul_(m, self.beta_2)
        torch._foreach_add_(m, grads, alpha=1 - self.beta_2)
