"""Keras 3's Ftrl, Adafactor and Lamb on torch: the optimizers Keras's torch backend runs one
variable at a time through its generic `keras.ops` (they have no `torch_<name>.py`). Each rule
mirrors those ops: a Python number that Keras turns into a float32 tensor is a float32 0-d tensor
here too (`ops.power(x, 2)` even an int32 one), and one it passes through as a Python number stays
one, so parameters match Keras to float32 rounding. `app.engine.optimizers` registers them.
"""

from __future__ import annotations

import torch

from app.engine.config.declared import Key, boolean, number
from app.engine.optimizers.adaptive import (
    InitialAccumulator,
    epsilon_key,
    initial_accumulator_key,
    step_count,
)
from app.engine.optimizers.base import Optimizer, Slots, fraction
from app.engine.scalars import scalar, scalar_like

Tensor = torch.Tensor


def _rms(x: Tensor) -> Tensor:
    return torch.sqrt(torch.mean(torch.square(x)))


def _strength() -> Key[float]:
    return number(0.0, min_value=0.0)


class Ftrl(InitialAccumulator):
    """Keras Ftrl (follow the regularized leader): the weights are recomputed every step from
    the linear term `z` and the accumulated squared gradients `n`; `beta` adds
    `beta / (2 lr)` to the L2 strength."""

    default_learning_rate = 0.001
    learning_rate_power = number(-0.5, max_value=0.0)
    # Keras checks the first four; a negative beta could make the denominator zero.
    initial_accumulator_value = initial_accumulator_key()
    l1_regularization_strength = _strength()
    l2_regularization_strength = _strength()
    l2_shrinkage_regularization_strength = _strength()
    beta = _strength()

    def slot_names(self) -> tuple[str, ...]:
        return ("accumulator", "linear")

    def _update(self, grads: list[Tensor], params: list[Tensor], slots: Slots) -> None:
        like = params[0]
        lr = scalar_like(self.learning_rate, like)
        power = scalar_like(-self.learning_rate_power, like)
        # Python number over tensor: torch's reciprocal-then-multiply, as in Keras.
        l2 = self.l2_regularization_strength + self.beta / (2.0 * lr)
        shrinkage = scalar_like(2 * self.l2_shrinkage_regularization_strength, like)
        l1 = self.l1_regularization_strength
        low, high = scalar_like(-l1, like), scalar_like(l1, like)
        for g, p, n, z in zip(grads, params, slots["accumulator"], slots["linear"], strict=True):
            shrunk = g + shrinkage * p
            n_new = n + torch.square(g)
            n_new_power = torch.pow(n_new, power)
            z.add_(shrunk - ((n_new_power - torch.pow(n, power)) / lr) * p)
            quadratic = n_new_power / lr + 2 * l2
            p.copy_((torch.clip(z, low, high) - z) / quadratic)
            n.copy_(n_new)


class Adafactor(Optimizer):
    """Keras Adafactor: the second moment of a weight of rank >= 2 is kept factored over its
    last two axes (row means `r`, column means `c`); the step is scaled by the weight's RMS and
    its own RMS is clipped at `clip_threshold`. With `relative_step` and a constant rate, the
    rate is capped at `1 / sqrt(step)`."""

    default_learning_rate = 0.001
    # Keras checks none of these; a positive decay makes beta_2 negative.
    beta_2_decay = number(-0.8, max_value=0.0)
    epsilon_1 = number(1e-30, min_value=0.0)
    epsilon_2 = number(1e-3, min_value=0.0)
    clip_threshold = number(1.0, min_value=0.0, min_exclusive=True)
    relative_step = boolean(True)

    def slot_names(self) -> tuple[str, ...]:
        return ("velocity",)

    def build(self, params: list[torch.nn.Parameter]) -> None:
        fresh = self._params is None
        super().build(params)
        if not fresh:
            return
        # Keras keeps a 0-d placeholder for the factors of a weight of rank < 2.
        factored = [p.dim() >= 2 for p in params]
        self._slots["r"] = [
            p.new_zeros(p.shape[:-1] if f else ()) for p, f in zip(params, factored, strict=True)
        ]
        self._slots["c"] = [
            p.new_zeros((*p.shape[:-2], p.shape[-1]) if f else ())
            for p, f in zip(params, factored, strict=True)
        ]

    def _update(self, grads: list[Tensor], params: list[Tensor], slots: Slots) -> None:
        like = params[0]
        lr = scalar_like(self.learning_rate, like)
        step = step_count(self.iterations + 1, like)
        cap = 1 / torch.sqrt(step)
        if self.relative_step and self.schedule is None:
            lr = torch.minimum(lr, cap)
        rho = torch.minimum(lr, cap)
        epsilon_1 = scalar_like(self.epsilon_1, like)
        epsilon_2 = scalar_like(self.epsilon_2, like)
        one = scalar_like(1.0, like)
        beta_2 = 1 - torch.pow(step, scalar_like(self.beta_2_decay, like))
        rest = 1 - beta_2
        rows, cols, velocities = slots["r"], slots["c"], slots["velocity"]
        for g, p, r, c, v in zip(grads, params, rows, cols, velocities, strict=True):
            alpha = torch.maximum(epsilon_2, _rms(p)) * rho
            g_square = torch.square(g) + epsilon_1
            if p.dim() >= 2:
                r.copy_(beta_2 * r + rest * torch.mean(g_square, dim=-1))
                c.copy_(beta_2 * c + rest * torch.mean(g_square, dim=-2))
                row_share = r / torch.mean(r, dim=-1, keepdim=True)
                v.copy_(row_share.unsqueeze(-1) * c.unsqueeze(-2))
            else:
                v.copy_(beta_2 * v + rest * g_square)
            u = g / torch.sqrt(v)
            # Keras divides by clip_threshold as a Python number, not a tensor.
            u = u / torch.maximum(one, torch.divide(_rms(u), self.clip_threshold))
            p.sub_(alpha * u)


class Lamb(Optimizer):
    """Keras Lamb: the bias-corrected Adam direction, scaled per weight by the trust ratio
    `||w|| / ||direction||` (1 when either norm is zero). Keras has no string id for it; only
    `{"class_name": "Lamb"}` names it."""

    default_learning_rate = 0.001
    beta_1 = fraction(0.9)
    beta_2 = fraction(0.999)
    epsilon = epsilon_key()

    def slot_names(self) -> tuple[str, ...]:
        return ("momentum", "velocity")

    def _update(self, grads: list[Tensor], params: list[Tensor], slots: Slots) -> None:
        like = params[0]
        lr = scalar_like(self.learning_rate, like)
        step = step_count(self.iterations + 1, like)
        beta_1_power = torch.pow(scalar_like(self.beta_1, like), step)
        beta_2_power = torch.pow(scalar_like(self.beta_2, like), step)
        keep_1 = scalar_like(1 - self.beta_1, like)
        keep_2 = scalar_like(1 - self.beta_2, like)
        epsilon = scalar_like(self.epsilon, like)
        one = scalar_like(1.0, like)
        two = scalar(2, torch.int32, like.device)  # Keras's ops.power(x, 2)
        moments = zip(grads, params, slots["momentum"], slots["velocity"], strict=True)
        for g, p, m, v in moments:
            m.add_((g - m) * keep_1)
            v.add_((torch.square(g) - v) * keep_2)
            m_hat = m / (1.0 - beta_1_power)
            direction = m_hat / (torch.sqrt(v / (1.0 - beta_2_power)) + epsilon)
            w_norm = torch.sqrt(torch.sum(torch.pow(p, two)))
            d_norm = torch.sqrt(torch.sum(torch.pow(direction, two)))
            ratio = torch.where(w_norm > 0, torch.where(d_norm > 0, w_norm / d_norm, one), one)
            p.sub_(ratio * lr * direction)
