"""Core Keras layers: Dense, Activation, Dropout, Flatten."""

from __future__ import annotations

import math

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.layers import activations, keys
from app.engine.layers.base import LAYERS, Layer, Shape
from app.engine.layers.kernel import KernelLayer

MAX_UNITS = 1 << 20


@LAYERS.add()
class Dense(KernelLayer):
    integer_input = "cast"  # Keras promotes the matmul to float32
    supports_masking = True
    units = keys.integer(min_value=1, max_value=MAX_UNITS)
    activation = keys.activation()
    use_bias = keys.boolean(True)
    kernel_initializer = keys.initializer("glorot_uniform")
    bias_initializer = keys.initializer("zeros")
    kernel_regularizer = keys.regularizer("kernel")
    bias_regularizer = keys.regularizer("bias")
    kernel_constraint = keys.constraint("kernel")
    bias_constraint = keys.constraint("bias")
    lora_rank = keys.must_be_null()
    lora_alpha = keys.anything(saved=False)
    quantization_config = keys.must_be_null()

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        features = input_shape[-1] if len(input_shape) >= 2 else None
        if features is None:
            raise ConfigError(loc, f"Dense needs a known last input dimension, got {input_shape}")
        self.add_kernel((features, self.units), self.units, generator, loc)
        return (*input_shape[:-1], self.units)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if self.use_bias and x.dim() == 2:
            y = torch.addmm(self.bias, x, self.kernel)
        else:
            y = torch.matmul(x, self.kernel)
            if self.use_bias:
                y = y + self.bias
        return self.activation_fn(y)


@LAYERS.register("Activation")
class ActivationLayer(Layer):
    class_name = "Activation"
    supports_masking = True
    activation = keys.activation(keys.REQUIRED)

    def __post_init__(self) -> None:
        self.fn = activations.get(self.activation, ())[1]

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return self.fn(x)


@LAYERS.add()
class Dropout(Layer):
    """Inverted dropout, active only in training. Its mask comes from the trainer's generator
    (set with `set_generator`), so a seeded fit is reproducible."""

    supports_masking = True
    rate = keys.rate()
    seed = keys.integer_or_none()
    noise_shape = keys.must_be_null(saved=True)

    def __post_init__(self) -> None:
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = torch.empty_like(x).bernoulli_(keep, generator=self.generator)
        return x * mask / keep


@LAYERS.add()
class Flatten(Layer):
    integer_input = "shape"
    data_format = keys.data_format()

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
