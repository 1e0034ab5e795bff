"""What every kernel-and-bias layer (Dense, EinsumDense, the convolutions) shares: its
activation, use_bias and initializer options, read, written back and used the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import Loc
from app.engine.config.readers import get_bool
from app.engine.layers import activations
from app.engine.layers.base import Layer
from app.engine.weights import initializers

# The regularizer and constraint keys of a kernel layer, in Keras's config order (the base class
# reads them and fills them in).
KERNEL_OPTION_KEYS = (
    "kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
    "bias_constraint",
)  # fmt: skip


def read_kernel_args(config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
    """The constructor keywords a kernel layer reads from its config the same way (Keras's
    defaults: no activation, a bias, glorot_uniform kernel and zeros bias)."""
    return {
        "activation": config.get("activation"),
        "use_bias": get_bool(config, "use_bias", loc, True),
        "kernel_initializer": config.get("kernel_initializer", "glorot_uniform"),
        "bias_initializer": config.get("bias_initializer", "zeros"),
        "trainable": get_bool(config, "trainable", loc, True),
        "loc": loc,
    }


class KernelLayer(Layer):
    """A layer with a `kernel`, an optional `bias` and an activation after them. A layer on
    declared keys declares `activation`, `use_bias`, `kernel_initializer` and `bias_initializer`
    (`app.engine.layers.keys`) where Keras's config order puts them; they are resolved here."""

    kernel: torch.Tensor
    bias: torch.Tensor
    activation_fn: activations.Activation

    def __post_init__(self) -> None:
        if not self.declared_keys:  # a hand-written layer calls set_kernel_options instead
            return
        self.activation_name = self._value("activation")
        self.activation_fn = activations.get(self.activation_name, ())[1]
        self.kernel_init_config = self._value("kernel_initializer")
        self.kernel_init = initializers.get(self.kernel_init_config, ())[1]
        self.bias_init_config = self._value("bias_initializer")
        self.bias_init = initializers.get(self.bias_init_config, ())[1]

    def set_kernel_options(
        self,
        activation: Any,
        use_bias: bool,
        kernel_initializer: Any,
        bias_initializer: Any,
        loc: Loc,
    ) -> None:
        self.activation_name, self.activation_fn = activations.get(activation, (*loc, "activation"))
        self.use_bias = use_bias
        self.kernel_init_config, self.kernel_init = initializers.get(
            kernel_initializer, (*loc, "kernel_initializer")
        )
        self.bias_init_config, self.bias_init = initializers.get(
            bias_initializer, (*loc, "bias_initializer")
        )

    def kernel_config(self) -> dict[str, Any]:
        """The options as Keras writes them (in its key order)."""
        return {
            "activation": self.activation_name,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_init_config,
            "bias_initializer": self.bias_init_config,
        }

    def add_kernel(
        self, kernel_shape: tuple[int, ...], units: int, generator: torch.Generator
    ) -> None:
        """Draw the kernel, then (with use_bias) a bias of `units`, in Keras's order."""
        self.add_weight("kernel", self.kernel_init(kernel_shape, generator))
        if self.use_bias:
            self.add_weight("bias", self.bias_init((units,), generator))
