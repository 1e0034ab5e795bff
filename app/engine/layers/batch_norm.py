"""Keras's BatchNormalization (`layers/normalization/batch_normalization.py`), step for step.

Batch statistics are used only when the call is training *and* the layer is trainable, so a
frozen layer normalizes with its moving statistics even inside fit. The batch variance is the
biased one, computed as Keras's torch backend does (`E[x²] - E[x]²`), and it is also what the
moving variance is updated with. The moving statistics are non-trainable buffers, updated
without autograd. Weights, in Keras's order: gamma, beta, moving_mean, moving_variance.
With a Keras mask (one dimension less than the input), the batch statistics are taken over the
unmasked positions only, with Keras's two-pass formula and its 1e-7 in the divisor.
"""

from __future__ import annotations

from typing import Any

import torch

from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.layers import keys
from app.engine.layers.base import LAYERS, Layer, Shape

_NOT_YET = "is not supported yet; leave it false"


@LAYERS.add()
class BatchNormalization(Layer):
    integer_input = "cast"  # Keras computes in float32 (the result type with its weights)
    supports_masking = True
    uses_mask = True
    axis = keys.integer(-1)
    momentum = keys.number(0.99, min_value=0.0, max_value=1.0)
    epsilon = keys.number(1e-3, min_value=0.0, min_exclusive=True)
    center = keys.boolean(True)
    scale = keys.boolean(True)
    beta_initializer = keys.initializer("zeros", null=True)
    gamma_initializer = keys.initializer("ones", null=True)
    moving_mean_initializer = keys.initializer("zeros", null=True)
    moving_variance_initializer = keys.initializer("ones", null=True)
    beta_regularizer = keys.regularizer("beta")
    gamma_regularizer = keys.regularizer("gamma")
    beta_constraint = keys.constraint("beta")
    gamma_constraint = keys.constraint("gamma")
    synchronized = keys.must_be_false(_NOT_YET)
    renorm = keys.must_be_false(_NOT_YET)
    renorm_clipping = keys.must_be_null(saved=True)
    renorm_momentum = keys.number(0.99)
    gamma: torch.Tensor
    beta: torch.Tensor
    moving_mean: torch.Tensor
    moving_variance: torch.Tensor

    def __post_init__(self) -> None:
        self._reduce: list[int] = []
        self._broadcast: list[int] = []

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        rank = len(input_shape)
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ConfigError(
                (*loc, "axis"), f"axis {self.axis} is not a feature axis of input {input_shape}"
            )
        axis = self.axis % rank
        size = input_shape[axis]
        if size is None:
            raise ConfigError((*loc, "axis"), f"axis {self.axis} of {input_shape} has no size")
        shape = (size,)
        if self.scale:
            self.add_weight("gamma", keys.draw(self, "gamma_initializer", loc)(shape, generator))
        if self.center:
            self.add_weight("beta", keys.draw(self, "beta_initializer", loc)(shape, generator))
        for stat in ("moving_mean", "moving_variance"):
            value = keys.draw(self, f"{stat}_initializer", loc)(shape, generator)
            self.add_weight(stat, value.to(torch.float32), trainable=False)
        self._reduce = [d for d in range(rank) if d != axis]
        self._broadcast = [size if d == axis else 1 for d in range(rank)]
        return input_shape

    def _masked_moments(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[Any, Any]:
        if tuple(mask.shape) != tuple(x.shape[:-1]):
            raise DataError(
                ("x",),
                f"{self.name}: a mask of shape {tuple(mask.shape)} does not fit inputs of shape "
                f"{tuple(x.shape)} (Keras needs one dimension less)",
            )
        keep = mask.to(torch.bool).unsqueeze(-1).expand(x.shape)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        weights = torch.sum(keep.to(x.dtype), dim=self._reduce, keepdim=True) + 1e-7
        mean = torch.sum(torch.where(keep, x, zero), dim=self._reduce, keepdim=True) / weights
        diff = torch.where(keep, x - mean, zero)
        variance = torch.sum(torch.square(diff), dim=self._reduce, keepdim=True) / weights
        return mean, variance

    def forward(
        self, x: torch.Tensor, training: bool = False, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if training and self.trainable:
            if mask is None:
                mean = torch.mean(x, dim=self._reduce, keepdim=True)
                variance = torch.mean(torch.square(x), dim=self._reduce, keepdim=True)
                variance = variance - torch.square(mean)
            else:
                mean, variance = self._masked_moments(x, mask)
            mean = mean.reshape(-1)
            variance = variance.reshape(-1)
            with torch.no_grad():
                m = self.momentum
                self.moving_mean.copy_(self.moving_mean * m + mean.detach() * (1.0 - m))
                self.moving_variance.copy_(self.moving_variance * m + variance.detach() * (1.0 - m))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        mean = mean.reshape(self._broadcast)
        variance = variance.reshape(self._broadcast)
        inv = torch.rsqrt(variance + self.epsilon)
        if self.scale:
            inv = inv * self.gamma.reshape(self._broadcast)
        out = (x - mean) * inv
        if self.center:
            out = out + self.beta.reshape(self._broadcast)
        return out
