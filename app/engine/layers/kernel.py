"""What every kernel-and-bias layer (Dense, EinsumDense, the convolutions) shares: its
activation and initializer options, resolved and used the same way."""

from __future__ import annotations

from typing import Any

import torch

from app.engine.config.errors import Loc
from app.engine.layers import activations, keys
from app.engine.layers.base import Layer


class KernelLayer(Layer):
    """A layer with a `kernel`, an optional `bias` and an activation after them. It declares
    `activation`, `use_bias` (EinsumDense derives it), `kernel_initializer` and
    `bias_initializer` (`app.engine.layers.keys`) where Keras's config order puts them; they are
    resolved here."""

    kernel: torch.Tensor
    bias: torch.Tensor
    activation: str
    use_bias: bool
    kernel_initializer: dict[str, Any]
    bias_initializer: dict[str, Any]
    activation_fn: activations.Activation

    def __post_init__(self) -> None:
        self.activation_fn = activations.get(self.activation, ())[1]

    def add_kernel(
        self, kernel_shape: tuple[int, ...], units: int, generator: torch.Generator, loc: Loc
    ) -> None:
        """Draw the kernel, then (with use_bias) a bias of `units`, in Keras's order. A shape an
        initializer cannot fill is a ConfigError at its key."""
        kernel_init = keys.draw(self, "kernel_initializer", loc)
        self.add_weight("kernel", kernel_init(kernel_shape, generator))
        if self.use_bias:
            self.add_weight("bias", keys.draw(self, "bias_initializer", loc)((units,), generator))
