"""Keras 3's Ftrl, Adafactor and Lamb on torch: the optimizers Keras's torch backend runs one
variable at a time through its generic `keras.ops` (they have no `torch_<name>.py`). Each rule
mirrors those ops: a Python number that Keras turns into a float32 tensor is a float32 0-d tensor
here too (`ops.power(x, 2)` even an int32 one), and one it passes through as a Python number stays
one, so parameters match Keras to float32 rounding. `app.engine.optimizers` registers them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import Loc
from app.engine.config.readers import get_bool, get_float
from app.engine.optimizers.adaptive import InitialAccumulator, step_count
from app.engine.optimizers.base import Optimizer, Slots, _fraction
from app.engine.scalars import scalar, scalar_like

Tensor = torch.Tensor


def _rms(x: Tensor) -> Tensor:
    return torch.sqrt(torch.mean(torch.square(x)))


class Ftrl(InitialAccumulator):
    """Keras Ftrl (follow the regularized leader): the weights are recomputed every step from
    the linear term `z` and the accumulated squared gradients `n`; `beta` adds
    `beta / (2 lr)` to the L2 strength."""

    default_learning_rate = 0.001
    hyperparameters = {
        "learning_rate_power": -0.5,
        "initial_accumulator_value": 0.1,
        "l1_regularization_strength": 0.0,
        "l2_regularization_strength": 0.0,
        "l2_shrinkage_regularization_strength": 0.0,
        "beta": 0.0,
    }
    learning_rate_power: float
    l1_regularization_strength: float
    l2_regularization_strength: float
    l2_shrinkage_regularization_strength: float
    beta: float

    def slot_names(self) -> tuple[str, ...]:
        return ("accumulator", "linear")

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        out = {
            "learning_rate_power": get_float(
                config, "learning_rate_power", loc, -0.5, max_value=0.0
            ),
        }
        # Keras checks the first four; a negative beta could make the denominator zero.
        for key in (
            "initial_accumulator_value",
            "l1_regularization_strength",
            "l2_regularization_strength",
            "l2_shrinkage_regularization_strength",
            "beta",
        ):
            out[key] = get_float(config, key, loc, cls.hyperparameters[key], min_value=0.0)
        return out

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
    hyperparameters = {
        "beta_2_decay": -0.8,
        "epsilon_1": 1e-30,
        "epsilon_2": 1e-3,
        "clip_threshold": 1.0,
        "relative_step": True,
    }
    beta_2_decay: float
    epsilon_1: float
    epsilon_2: float
    clip_threshold: float
    relative_step: bool

    def slot_names(self) -> tuple[str, ...]:
        return ("velocity",)

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            # Keras checks none of these; a positive decay makes beta_2 negative.
            "beta_2_decay": get_float(config, "beta_2_decay", loc, -0.8, max_value=0.0),
            "epsilon_1": get_float(config, "epsilon_1", loc, 1e-30, min_value=0.0),
            "epsilon_2": get_float(config, "epsilon_2", loc, 1e-3, min_value=0.0),
            "clip_threshold": get_float(
                config, "clip_threshold", loc, 1.0, min_value=0.0, min_exclusive=True
            ),
            "relative_step": get_bool(config, "relative_step", loc, True),
        }

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
    hyperparameters = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}
    beta_1: float
    beta_2: float
    epsilon: float

    def slot_names(self) -> tuple[str, ...]:
        return ("momentum", "velocity")

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        return {
            "beta_1": _fraction(config, "beta_1", loc, 0.9),
            "beta_2": _fraction(config, "beta_2", loc, 0.999),
            "epsilon": get_float(config, "epsilon", loc, 1e-7, min_value=0.0),
        }

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
