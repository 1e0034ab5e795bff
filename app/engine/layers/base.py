"""The layer base class and the LAYERS registry.

A layer is a torch module built from a Keras layer config. Weights are stored in Keras's own
layout (a Dense kernel is `(in, out)`), so weights copy between Keras and here without transposes,
and `keras_weights()` lists them in the order Keras's `get_weights()` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from app.engine import activations, initializers
from app.engine.errors import ConfigError, Loc
from app.engine.registry import Registry

Shape = tuple[int | None, ...]

LAYERS: Registry[Layer] = Registry("layer")

# Keys every Keras layer config may carry that do not change the computation here.
BASE_KEYS = ("name", "trainable", "dtype", "autocast")


def check_dtype(config: Mapping[str, Any], loc: Loc) -> None:
    """Only float32 is supported for now; accept Keras's DTypePolicy objects that say so."""
    dtype = config.get("dtype")
    if dtype is None:
        return
    name = dtype
    if isinstance(dtype, Mapping):
        inner = dtype.get("config")
        name = inner.get("name") if isinstance(inner, Mapping) else None
    if name != "float32":
        raise ConfigError((*loc, "dtype"), f"only float32 is supported yet, got {dtype!r}")


def require_null(config: Mapping[str, Any], keys: tuple[str, ...], loc: Loc) -> None:
    """Keras options we accept only at their default (null) value for now."""
    for key in keys:
        if config.get(key) is not None:
            raise ConfigError((*loc, key), "is not supported yet; leave it null")


class Layer(nn.Module):
    """A Keras layer: built once for an input shape, then applied to batches."""

    class_name: ClassVar[str]
    #: Keras config keys this layer understands beyond BASE_KEYS.
    config_keys: ClassVar[tuple[str, ...]] = ()
    #: Keras's `supports_masking`: an incoming mask passes through unchanged (compute_mask's
    #: default). A layer without it drops the mask, as Keras does (with a warning there).
    supports_masking: ClassVar[bool] = False
    #: The layer's forward takes `mask=` (a bool tensor, or a list of them for list inputs).
    uses_mask: ClassVar[bool] = False
    #: The layer takes a list of tensors (merge layers): build gets a list of shapes and forward
    #: a list of tensors.
    multi_input: ClassVar[bool] = False
    #: For layers called with several named tensors (MultiHeadAttention's query, value, key):
    #: the argument names in order. In a Functional graph the node's positional and keyword
    #: tensors are put in this order, None where one is absent, and forward gets that list.
    input_names: ClassVar[tuple[str, ...]] = ()
    #: Non-tensor call keyword arguments a Functional node may carry (use_causal_mask); they are
    #: passed to forward as keyword arguments.
    call_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, name: str, trainable: bool = True) -> None:
        super().__init__()
        self.name = name
        self.trainable = trainable
        self._weight_names: list[str] = []
        self.output_shape: Shape = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        raise NotImplementedError

    def layer_config(self) -> dict[str, Any]:
        """The layer-specific part of the canonical config."""
        return {}

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": "float32",
            **self.layer_config(),
        }

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        """Create weights for `input_shape` (batch dimension included) and return the output
        shape. Shape errors are ConfigErrors at `loc`."""
        return input_shape

    def add_weight(self, name: str, value: torch.Tensor, *, trainable: bool = True) -> None:
        if trainable:
            param = nn.Parameter(value.to(torch.float32), requires_grad=self.trainable)
            self.register_parameter(name, param)
        else:
            self.register_buffer(name, value)
        self._weight_names.append(name)

    def keras_weights(self) -> list[tuple[str, torch.Tensor]]:
        """(name, tensor) in Keras's `get_weights()` order for this layer."""
        return [(n, getattr(self, n)) for n in self._weight_names]

    def h5_paths(self) -> list[str]:
        """Where each of `keras_weights()` sits in a `.keras` file's model.weights.h5, relative
        to the layer's group: `vars/<i>` for the layer's own variables; layers that hold other
        layers (an RNN's cell, a wrapper's layer) nest their groups as Keras's saver does."""
        return [f"vars/{i}" for i in range(len(self.keras_weights()))]

    def count_params(self) -> tuple[int, int]:
        """(trainable, non-trainable) parameter counts."""
        trainable = non_trainable = 0
        for _, tensor in self.keras_weights():
            if isinstance(tensor, nn.Parameter) and self.trainable:
                trainable += tensor.numel()
            else:
                non_trainable += tensor.numel()
        return trainable, non_trainable

    def set_kernel_options(
        self,
        activation: Any,
        use_bias: bool,
        kernel_initializer: Any,
        bias_initializer: Any,
        loc: Loc,
    ) -> None:
        """The options every kernel-and-bias layer (Dense, convolutions) shares."""
        self.activation_name, self.activation = activations.get(activation, (*loc, "activation"))
        self.use_bias = use_bias
        self.kernel_init_config, self.kernel_init = initializers.get(
            kernel_initializer, (*loc, "kernel_initializer")
        )
        self.bias_init_config, self.bias_init = initializers.get(
            bias_initializer, (*loc, "bias_initializer")
        )

    # -- masks, added losses, constraints --------------------------------------------------------
    def compute_mask(self, x: Any, mask: Any) -> torch.Tensor | None:
        """The mask of this layer's output given its input and input mask (Keras's
        `compute_mask`)."""
        return mask if self.supports_masking else None

    def call_masked(
        self, x: Any, mask: Any, training: bool, options: Mapping[str, Any] | None = None
    ) -> tuple[Any, torch.Tensor | None]:
        """Run the layer with its input mask (and a node's call options); returns (output,
        output mask)."""
        kwargs = dict(options or {})
        if self.uses_mask:
            kwargs["mask"] = mask
        y = self(x, training, **kwargs)
        return y, self.compute_mask(x, mask)

    def added_losses(self) -> list[torch.Tensor]:
        """Losses this layer adds to the training and evaluation loss (Keras's `layer.losses`):
        weight regularization from the current weights, activity regularization from the last
        forward pass."""
        return []

    def apply_constraints(self) -> None:
        """Project weights onto their constraints (run after every optimizer step)."""

    def check_input(self, x: np.ndarray, loc: Loc) -> None:
        """For a first layer: refuse raw inputs it cannot take (a DataError at `loc`), before
        any work starts."""

    def forward(self, x: Any, training: bool = False) -> Any:
        raise NotImplementedError
