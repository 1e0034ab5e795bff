"""The dtype policy: where the model computes in half precision, and Keras's dynamic loss
scaling for float16.

"float32" computes everything in float32. "mixed_float16" and "mixed_bfloat16" keep the
variables in float32 and run the model's forward pass under torch.autocast in the half type;
the outputs are cast back to float32 before the losses and metrics, which compute in float32
as Keras's do (a Keras Loss's dtype is floatx). Autocast's per-op choice (matrix products and
convolutions in half, reductions and a few others in float32) is close to, not the same as,
Keras's (every layer op in the compute dtype), so half-precision numbers agree with Keras to
half-precision rounding, not bit for bit.

With "mixed_float16" and `auto_scale_loss` (the default), Keras wraps the optimizer in a
LossScaleOptimizer; `LossScaler` is its arithmetic: the loss is multiplied by the scale
(initially 2**15) before backward and the gradients divided by it; when every gradient is
finite the update runs and, after 2000 such steps in a row, the scale doubles; otherwise the
update is skipped and the scale halves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

INITIAL_SCALE = 2.0**15
GROWTH_STEPS = 2000
HALF = {"mixed_float16": torch.float16, "mixed_bfloat16": torch.bfloat16}


@contextlib.contextmanager
def compute(policy: str, device: torch.device) -> Iterator[None]:
    """The context the model's forward pass runs in under `policy`."""
    dtype = HALF.get(policy)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


class LossScaler:
    """Keras's LossScaleOptimizer around the optimizer's update: scale, unscale, skip."""

    def __init__(self, initial_scale: float = INITIAL_SCALE, growth_steps: int = GROWTH_STEPS):
        self.scale = float(initial_scale)
        self.growth_steps = growth_steps
        self.counter = 0

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * torch.tensor(self.scale, dtype=torch.float32, device=loss.device)

    def unscale(self, params: list[torch.nn.Parameter]) -> bool:
        """Divide the gradients by the scale; True when all are finite and the update should
        run (the scale and its step counter are updated either way, as Keras does)."""
        grads = [p.grad for p in params if p.grad is not None]
        finite = (
            bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()) if grads else True
        )
        if not finite:
            self.scale *= 0.5
            self.counter = 0
            return False
        # One fused division by a Python number: no tensor made or copied to the device per
        # step (the scale is a power of two, so this is exact, as Keras's division is).
        if grads:
            torch._foreach_div_(grads, self.scale)
        if self.counter == self.growth_steps - 1:
            self.scale *= 2.0
            self.counter = 0
        else:
            self.counter += 1
        return True

    def state(self) -> dict[str, Any]:
        return {"scale": self.scale, "counter": self.counter}

    def load_state(self, meta: dict[str, Any]) -> None:
        self.scale = float(meta["scale"])
        self.counter = int(meta["counter"])
