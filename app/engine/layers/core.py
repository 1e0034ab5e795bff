"""Core Keras layers: Dense, Activation, Dropout, Flatten."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_float, get_int, get_str
from app.engine.config.registry import known_keys
from app.engine.layers import activations
from app.engine.layers.base import BASE_KEYS, LAYERS, Layer, Shape, option_weights, require_null
from app.engine.layers.kernel import KernelLayer, read_kernel_args

MAX_UNITS = 1 << 20


@LAYERS.register("Dense")
class Dense(KernelLayer):
    class_name = "Dense"
    integer_input = "cast"  # Keras promotes the matmul to float32
    supports_masking = True
    weight_options = option_weights("kernel", "bias")
    config_keys = (
        "units", "activation", "use_bias", "kernel_initializer", "bias_initializer",
        "kernel_regularizer", "bias_regularizer", "activity_regularizer",
        "kernel_constraint", "bias_constraint", "lora_rank", "lora_alpha", "quantization_config",
    )  # fmt: skip

    def __init__(
        self,
        *,
        name: str,
        units: int,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        trainable: bool = True,
        loc: Loc = (),
    ) -> None:
        super().__init__(name=name, trainable=trainable)
        self.units = units
        self.set_kernel_options(activation, use_bias, kernel_initializer, bias_initializer, loc)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        require_null(config, ("lora_rank", "quantization_config"), loc)
        return cls(
            name=name,
            units=get_int(config, "units", loc, min_value=1, max_value=MAX_UNITS),
            **read_kernel_args(config, loc),
        )

    def layer_config(self) -> dict[str, Any]:
        return {
            "units": self.units,
            **self.kernel_config(),
            "kernel_regularizer": None,
            "bias_regularizer": None,
            "kernel_constraint": None,
            "bias_constraint": None,
        }

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        features = input_shape[-1] if len(input_shape) >= 2 else None
        if features is None:
            raise ConfigError(loc, f"Dense needs a known last input dimension, got {input_shape}")
        self.add_kernel((features, self.units), self.units, generator)
        return (*input_shape[:-1], self.units)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if self.use_bias and x.dim() == 2:
            y = torch.addmm(self.bias, x, self.kernel)
        else:
            y = torch.matmul(x, self.kernel)
            if self.use_bias:
                y = y + self.bias
        return self.activation(y)


@LAYERS.register("Activation")
class ActivationLayer(Layer):
    class_name = "Activation"
    supports_masking = True
    config_keys = ("activation",)

    def __init__(self, *, name: str, activation: Any, trainable: bool = True, loc: Loc = ()):
        super().__init__(name=name, trainable=trainable)
        self.activation_name, self.fn = activations.get(activation, (*loc, "activation"))

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        if "activation" not in config:
            raise ConfigError((*loc, "activation"), "is required")
        return cls(name=name, activation=config["activation"], loc=loc)

    def layer_config(self) -> dict[str, Any]:
        return {"activation": self.activation_name}

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return self.fn(x)


@LAYERS.register("Dropout")
class Dropout(Layer):
    """Inverted dropout, active only in training. Its mask comes from the trainer's generator
    (set with `set_generator`), so a seeded fit is reproducible."""

    class_name = "Dropout"
    supports_masking = True
    config_keys = ("rate", "noise_shape", "seed")

    def __init__(self, *, name: str, rate: float, seed: int | None = None) -> None:
        super().__init__(name=name)
        self.rate = rate
        self.seed = seed
        self.generator: torch.Generator | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        require_null(config, ("noise_shape",), loc)
        rate = get_float(config, "rate", loc, min_value=0.0)
        if rate >= 1.0:
            raise ConfigError((*loc, "rate"), f"must be in [0, 1), got {rate}")
        return cls(name=name, rate=rate, seed=get_int(config, "seed", loc, None))

    def layer_config(self) -> dict[str, Any]:
        return {"rate": self.rate, "seed": self.seed, "noise_shape": None}

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = torch.empty_like(x).bernoulli_(keep, generator=self.generator)
        return x * mask / keep


@LAYERS.register("Flatten")
class Flatten(Layer):
    class_name = "Flatten"
    integer_input = "shape"
    config_keys = ("data_format",)

    def __init__(self, *, name: str, data_format: str = "channels_last") -> None:
        super().__init__(name=name)
        self.data_format = data_format

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        fmt = get_str(config, "data_format", loc, None, choices=["channels_last", "channels_first"])
        return cls(name=name, data_format=fmt or "channels_last")

    def layer_config(self) -> dict[str, Any]:
        return {"data_format": self.data_format}

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        rest = input_shape[1:]
        if any(d is None for d in rest):
            return (input_shape[0], None)
        return (input_shape[0], math.prod(d for d in rest if d is not None))

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if self.data_format == "channels_first" and x.dim() > 2:
            # Keras always flattens in channels_last order.
            x = x.movedim(1, -1)
        return x.reshape(x.shape[0], -1)
