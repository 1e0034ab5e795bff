"""Keras's optimizer-wide training options, apart from the update rules: loss scaling, gradient
accumulation and the exponential moving average (EMA) of the weights. `Options` holds their
settings, parses them from an optimizer config, and keeps their tensors (the accumulated
gradients and the averages), which checkpoints save beside the optimizer's slots.

Keras's rules (`BaseOptimizer.apply` and `_backend_apply_gradients`):
- `loss_scale_factor`: the loss is multiplied by it before backward and the gradients divided by
  it at the start of each apply.
- `gradient_accumulation_steps` N: an apply only adds its gradients to the accumulators, except
  every N-th, which updates with `(gradients + accumulated) / N` and zeroes the accumulators.
  `iterations` counts updates (raw applies // N); a schedule reads the raw count.
- `use_ema`: after every apply (updating or not), `average = m * average + (1 - m) * weight` over
  all trainable weights, with `m = 0` while `iterations == 0`; every `ema_overwrite_frequency`
  updates the weights take the averages, and fit's end copies them in
  (`finalize_variable_values`).
"""

from __future__ import annotations

import torch

from app.engine.config.declared import Declared, boolean, integer_or_none, number, number_or_none
from app.engine.scalars import scalar_like

Tensor = torch.Tensor

_MAX_ACCUMULATION = 1_000_000


class Options(Declared):
    """The options' settings (config keys an optimizer accepts beside its own) and, once built,
    their tensors (one per parameter)."""

    use_ema = boolean(False)
    ema_momentum = number(0.99, min_value=0.0, max_value=1.0)
    ema_overwrite_frequency = integer_or_none(min_value=1)
    loss_scale_factor = number_or_none(min_value=0.0, min_exclusive=True)
    gradient_accumulation_steps = integer_or_none(min_value=2, max_value=_MAX_ACCUMULATION)

    def __post_init__(self) -> None:
        self.averages: list[Tensor] = []
        self.accumulators: list[Tensor] = []

    def build(self, params: list[torch.nn.Parameter]) -> None:
        self.averages = (
            [torch.zeros_like(p, requires_grad=False) for p in params] if self.use_ema else []
        )
        self.accumulators = (
            [torch.zeros_like(p, requires_grad=False) for p in params]
            if self.gradient_accumulation_steps
            else []
        )

    def named_tensors(self) -> dict[str, list[Tensor]]:
        """The tensors a checkpoint must carry, by Keras's variable names."""
        named = {"average": self.averages, "gradient_accumulator": self.accumulators}
        return {name: tensors for name, tensors in named.items() if tensors}

    def updates_per(self, steps: int) -> int:
        """Keras's `iterations`: the updates applied after `steps` applies."""
        return (
            steps // self.gradient_accumulation_steps if self.gradient_accumulation_steps else steps
        )

    def unscale(self, grads: list[Tensor]) -> list[Tensor]:
        scale = self.loss_scale_factor
        return grads if scale is None else [g / scale for g in grads]

    def accumulate(self, grads: list[Tensor], index: list[int], steps: int) -> list[Tensor] | None:
        """With accumulation on: the mean gradients when this apply (the `steps`-th, from 0)
        updates, after which the accumulators are zeroed; otherwise None, the gradients added
        to the accumulators."""
        n = self.gradient_accumulation_steps
        if not n:
            return grads
        accumulated = [self.accumulators[i] for i in index]
        if (steps + 1) % n != 0:
            torch._foreach_add_(accumulated, grads, alpha=1.0)
            return None
        mean = [(g + a) / n for g, a in zip(grads, accumulated, strict=True)]
        # Every accumulator restarts, also those of parameters without a gradient this time.
        torch._foreach_mul_(self.accumulators, 0.0)
        return mean

    def update_average(self, params: list[Tensor], iterations: int) -> None:
        """The EMA step after an apply (`iterations` as before the apply), then the periodic
        overwrite of the weights."""
        if not self.use_ema or not params:
            return
        momentum = scalar_like(self.ema_momentum if iterations != 0 else 0.0, params[0])
        torch._foreach_mul_(self.averages, momentum)
        torch._foreach_add_(self.averages, torch._foreach_mul(params, 1 - momentum))
        frequency = self.ema_overwrite_frequency
        if frequency and (iterations + 1) % frequency == 0:
            torch._foreach_copy_(params, self.averages)

    def finalize(self, params: list[Tensor]) -> None:
        if self.use_ema and params:
            torch._foreach_copy_(params, self.averages)
