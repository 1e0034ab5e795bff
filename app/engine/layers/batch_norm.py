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

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.config.readers import get_bool, get_float, get_int
from app.engine.config.registry import known_keys
from app.engine.layers.base import BASE_KEYS, LAYERS, Layer, Shape, option_weights, require_null
from app.engine.weights import initializers

_INITIALIZERS = {
    "beta_initializer": "zeros",
    "gamma_initializer": "ones",
    "moving_mean_initializer": "zeros",
    "moving_variance_initializer": "ones",
}


@LAYERS.register("BatchNormalization")
class BatchNormalization(Layer):
    class_name = "BatchNormalization"
    integer_input = "cast"  # Keras computes in float32 (the result type with its weights)
    supports_masking = True
    uses_mask = True
    weight_options = option_weights("beta", "gamma")
    config_keys = (
        "axis", "momentum", "epsilon", "center", "scale", *_INITIALIZERS,
        "beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint",
        "synchronized", "renorm", "renorm_clipping", "renorm_momentum",
    )  # fmt: skip
    gamma: torch.Tensor
    beta: torch.Tensor
    moving_mean: torch.Tensor
    moving_variance: torch.Tensor

    def __init__(
        self,
        *,
        name: str,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        inits: Mapping[str, Any] | None = None,
        renorm_momentum: float = 0.99,
        trainable: bool = True,
        loc: Loc = (),
    ) -> None:
        super().__init__(name=name, trainable=trainable)
        self.axis = axis
        self.momentum = momentum
        self.epsilon = epsilon
        self.center = center
        self.scale = scale
        self.renorm_momentum = renorm_momentum
        given = {**_INITIALIZERS, **(inits or {})}
        self.init_configs: dict[str, Any] = {}
        self.inits: dict[str, initializers.Init] = {}
        for key in _INITIALIZERS:
            self.init_configs[key], self.inits[key] = initializers.get(given[key], (*loc, key))
        self._reduce: list[int] = []
        self._broadcast: list[int] = []

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        require_null(config, ("renorm_clipping",), loc)
        for key in ("renorm", "synchronized"):
            if get_bool(config, key, loc, False):
                raise ConfigError((*loc, key), "is not supported yet; leave it false")
        return cls(
            name=name,
            axis=get_int(config, "axis", loc, -1),
            momentum=get_float(config, "momentum", loc, 0.99, min_value=0.0, max_value=1.0),
            epsilon=get_float(config, "epsilon", loc, 1e-3, min_value=0.0, min_exclusive=True),
            center=get_bool(config, "center", loc, True),
            scale=get_bool(config, "scale", loc, True),
            inits={k: config[k] for k in _INITIALIZERS if config.get(k) is not None},
            renorm_momentum=get_float(config, "renorm_momentum", loc, 0.99),
            trainable=get_bool(config, "trainable", loc, True),
            loc=loc,
        )

    def layer_config(self) -> dict[str, Any]:
        return {
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            **self.init_configs,
            "beta_regularizer": None,
            "gamma_regularizer": None,
            "beta_constraint": None,
            "gamma_constraint": None,
            "synchronized": False,
            "renorm": False,
            "renorm_clipping": None,
            "renorm_momentum": self.renorm_momentum,
        }

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
            self.add_weight("gamma", self.inits["gamma_initializer"](shape, generator))
        if self.center:
            self.add_weight("beta", self.inits["beta_initializer"](shape, generator))
        for stat in ("moving_mean", "moving_variance"):
            value = self.inits[f"{stat}_initializer"](shape, generator)
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
