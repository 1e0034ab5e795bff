"""Keras 3's SGD (with momentum and Nesterov) on torch: its hyperparameters, their parsing, its
slots and its update rule, written with the same `torch._foreach_*` calls as Keras's torch-backend
optimizers (`keras/src/backend/torch/optimizers/`, `torch_<name>.py`) make, in the same order, so
parameters match Keras to float32 rounding. `app.engine.optimizers` registers it."""

from __future__ import annotations

import torch

from app.engine.config.declared import boolean, number
from app.engine.optimizers.base import Optimizer, Slots

Tensor = torch.Tensor


class SGD(Optimizer):
    """Keras SGD: the velocity holds learning-rate-scaled steps (torch.optim.SGD's does not)."""

    default_learning_rate = 0.01
    momentum = number(0.0, min_value=0.0, max_value=1.0)
    nesterov = boolean(False)

    def slot_names(self) -> tuple[str, ...]:
        return ("momentum",) if self.momentum != 0 else ()

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
