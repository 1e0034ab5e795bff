"""The layer base class and the LAYERS registry.

A layer is a torch module built from a Keras layer config. Weights are stored in Keras's own
layout (a Dense kernel is `(in, out)`), so weights copy between Keras and here without transposes,
and `keras_weights()` lists them in the order Keras's `get_weights()` does.

A layer declares each of its Keras config keys once, as a class attribute (a `Key` of
`app.engine.config.declared`, in Keras's config order): the allowed keys, `from_config`, the
constructor's keywords and `get_config` derive from that list, as for every other configurable
family. `name`, `trainable`, `dtype` and `activity_regularizer` are the base class's (BASE_KEYS).
Derived state (resolved activations, initializer functions) is set in `__post_init__`.

    @LAYERS.add()
    class Dense(KernelLayer):
        units = integer(min_value=1, max_value=MAX_UNITS)
        activation = activation_key()
        ...

Regularizers and constraints are wired here once for every layer. A layer declares the weights
that take Keras's `<option>_regularizer` / `<option>_constraint` keys with `regularizer(weight)`
and `constraint(weight)` keys; `activity_regularizer` is accepted by every layer, as Keras's base
Layer does (a layer whose Keras config writes it among its own keys declares it there with
`keys.activity_regularizer()`). They are turned into `added_losses()` (weight penalties from
the current weights, activity penalties from the last call, divided by its batch size) and
`apply_constraints()`. A layer without any of them pays nothing: no forward hook, and both
methods return at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from app.engine.config.declared import DeclaredKeys, Key
from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_bool
from app.engine.config.registry import Registry, known_keys
from app.engine.weights import constraints, regularizers

Shape = tuple[int | None, ...]

LAYERS: Registry[Layer] = Registry("layer")

# Keys every Keras layer config may carry: name, trainable and dtype are read by the model and
# the layer; activity_regularizer by the base class (Keras's base Layer takes it too).
BASE_KEYS = ("name", "trainable", "dtype", "autocast", "activity_regularizer")


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


def check_activity_regularizer(regularizer: regularizers.Regularizer, loc: Loc) -> None:
    """Refuse a regularizer that cannot apply to a layer's output."""
    if isinstance(regularizer, regularizers.OrthogonalRegularizer):
        raise ConfigError(
            loc,
            "OrthogonalRegularizer is for rank-2 weights; on a layer's output it would "
            "compare the samples of a batch (and is 0/0 for a batch of one)",
        )


class OptionKey(Key[Any]):
    """A `<option>_regularizer` or `<option>_constraint` key, and the weight it applies to."""

    def __init__(self, kind: str, weight: str) -> None:
        family = regularizers if kind == "regularizer" else constraints

        def read(config: Mapping[str, Any], key: str, loc: Loc, default: Any = None) -> Any:
            return family.get(config.get(key), (*loc, key))

        super().__init__(read, None, dump=serialize_option)
        self.kind = kind
        self.weight = weight


def regularizer(weight: str) -> Key[regularizers.Regularizer | None]:
    """A `<option>_regularizer` key: its penalty on `weight` joins the model's losses."""
    return OptionKey("regularizer", weight)


def constraint(weight: str) -> Key[constraints.Constraint | None]:
    """A `<option>_constraint` key: `weight` is projected onto it after each optimizer step."""
    return OptionKey("constraint", weight)


class Layer(DeclaredKeys, nn.Module):
    """A Keras layer: built once for an input shape, then applied to batches."""

    class_name: ClassVar[str]
    #: Keras's `supports_masking`: an incoming mask passes through unchanged (compute_mask's
    #: default). A layer without it drops the mask, as Keras does (with a warning there).
    supports_masking: ClassVar[bool] = False
    #: The layer's forward takes `mask=` (a bool tensor, or a list of them for list inputs).
    uses_mask: ClassVar[bool] = False
    #: With `uses_mask`: Keras's call takes `mask=` too, so a Functional node may give it (Keras
    #: records there the mask it propagates). False where Keras reads the masks attached to the
    #: inputs only (Maximum, Minimum, Multiply, MultiHeadAttention).
    mask_argument: ClassVar[bool] = True
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
    #: How the layer reads an integer or bool tensor, as Keras's own call does (see
    #: app.engine.arrays.dtypes): "cast" (converted to float32 first), "as_is", "shape" (moved, the
    #: output keeping the dtype) or None (refused).
    integer_input: ClassVar[str | None] = None
    #: False where Keras computes on a float16 or bfloat16 tensor in that type rather than
    #: autocasting it to float32 (refused).
    half_float_input: ClassVar[bool] = True
    #: The output's dtype whatever the input's (bool for the mask ops); None: float32, or as
    #: `integer_input` says.
    output_dtype: ClassVar[torch.dtype | None] = None

    def __init__(self, *, name: str, trainable: bool = True, **values: Any) -> None:
        nn.Module.__init__(self)
        self.name = name
        self.trainable = trainable
        self._weight_names: list[str] = []
        self.output_shape: Shape = ()
        self.activity_regularizer: regularizers.Regularizer | None = None
        self._activity_hook: Any = None
        self._activity_losses: list[torch.Tensor] = []
        # The weights' regularizers and constraints, by weight name (from the declared keys).
        self._regularizers: dict[str, regularizers.Regularizer] = {}
        self._constraints: dict[str, constraints.Constraint] = {}
        self._set_declared(values)
        for key in self.declared_keys.values():
            option = getattr(self, key.attr) if isinstance(key, OptionKey) else None
            if option is not None:
                assert isinstance(key, OptionKey)
                table = self._regularizers if key.kind == "regularizer" else self._constraints
                table[key.weight] = option
        if self.activity_regularizer is not None:  # declared where Keras's config writes it
            self._activity_hook = self.register_forward_hook(_record_activity)
        self.__post_init__()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "class_name" not in cls.__dict__:
            cls.class_name = cls.__name__  # Keras's class name, where the two differ it is set

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        """The layer `config` describes: each declared key read and checked (an unknown key is a
        ConfigError naming it), then the activity regularizer (where the layer does not declare
        it)."""
        known_keys(config, (*BASE_KEYS, *cls.declared_keys), loc)
        trainable = get_bool(config, "trainable", loc, True)
        layer = cls(name=name, trainable=trainable, **cls.read_values(config, loc))
        if "activity_regularizer" not in cls.declared_keys:
            layer.read_activity_regularizer(config, loc)
        return layer

    def layer_config(self) -> dict[str, Any]:
        """The layer-specific part of the canonical config: the declared keys that are saved."""
        return self.declared_config()

    def base_config(self) -> dict[str, Any]:
        """The keys Keras's base Layer writes first."""
        return {"name": self.name, "trainable": self.trainable, "dtype": "float32"}

    def get_config(self) -> dict[str, Any]:
        config = self.base_config()
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = None  # Keras writes it here, after dtype
        config.update(self.layer_config())
        if "activity_regularizer" in config and "activity_regularizer" not in self.declared_keys:
            config["activity_regularizer"] = serialize_option(self.activity_regularizer)
        return config

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        """Create weights for `input_shape` (batch dimension included) and return the output
        shape. Shape errors are ConfigErrors at `loc`."""
        return input_shape

    def add_weight(self, name: str, value: torch.Tensor, *, trainable: bool = True) -> None:
        for option in (self._regularizers.get(name), self._constraints.get(name)):
            if option is not None:
                option.check_weight(tuple(value.shape))
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

    # -- masks, added losses, constraints --------------------------------------------------------
    def compute_mask(self, x: Any, mask: Any) -> torch.Tensor | None:
        """The mask of this layer's output given its input and input mask (Keras's
        `compute_mask`)."""
        return mask if self.supports_masking else None

    def mask_shape(self, input_shape: Any) -> Any:
        """The shape a node's `mask=` argument must have (Keras's masks cover the input without
        its last axis; a list for list inputs); None where the layer checks it as it runs."""
        if isinstance(input_shape, list):
            return [None if s is None else s[:-1] for s in input_shape]
        return input_shape[:-1]

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
        activity regularization from the last forward pass, then weight regularization from
        the current weights."""
        if not (self._regularizers or self._activity_losses):
            return []
        return [*self.activity_losses(), *self.weight_losses()]

    def activity_losses(self) -> list[torch.Tensor]:
        """The activity penalties of the last call, one per output tensor, each divided by the
        output's batch size (Keras's rule, so the penalty does not grow with the batch)."""
        return list(self._activity_losses)

    def weight_losses(self) -> list[torch.Tensor]:
        """The weight penalties, in Keras's `trainable_weights` order. As in Keras, frozen
        weights are not penalized. Each is a device scalar (no host read)."""
        if not self._regularizers:
            return []
        out = []
        for name in self._weight_names:
            regularizer = self._regularizers.get(name)
            weight = getattr(self, name)
            if regularizer is not None and weight.requires_grad:
                out.append(regularizer(weight))
        return out

    @property
    def has_added_losses(self) -> bool:
        """Whether this layer can add losses (a model may skip the others)."""
        return bool(self._regularizers) or self.activity_regularizer is not None

    @property
    def has_constraints(self) -> bool:
        return bool(self._constraints)

    def apply_constraints(self) -> None:
        """Project weights onto their constraints (run after every optimizer step). As Keras's
        optimizer does, only weights that were just updated are projected: trainable ones that
        got a gradient (the trainer clears gradients to None before each backward pass)."""
        if not self._constraints:
            return
        with torch.no_grad():
            for name, constraint in self._constraints.items():
                weight = getattr(self, name, None)
                if isinstance(weight, nn.Parameter) and weight.grad is not None:
                    weight.copy_(constraint(weight))

    def read_activity_regularizer(self, config: Mapping[str, Any], loc: Loc) -> None:
        """Read `activity_regularizer` (BASE_KEYS); a null one keeps one the layer set itself."""
        aloc = (*loc, "activity_regularizer")
        activity = regularizers.get(config.get("activity_regularizer"), aloc)
        if activity is not None:
            self.set_activity_regularizer(activity, aloc)

    def set_activity_regularizer(self, regularizer: regularizers.Regularizer, loc: Loc) -> None:
        check_activity_regularizer(regularizer, loc)
        self.activity_regularizer = regularizer
        if self._activity_hook is None:
            self._activity_hook = self.register_forward_hook(_record_activity)

    def integer_input_rule(self) -> str | None:
        """`integer_input` for this layer as configured."""
        return self.integer_input

    def check_input(self, x: np.ndarray, loc: Loc) -> None:
        """For a first layer: refuse raw inputs it cannot take (a DataError at `loc`), before
        any work starts."""

    def forward(self, x: Any, training: bool = False) -> Any:
        raise NotImplementedError


def serialize_option(option: Any) -> dict[str, Any] | None:
    return None if option is None else dict(option.serialize())


def _tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, list | tuple):
        return [t for item in output for t in _tensors(item)]
    return []


def _record_activity(layer: nn.Module, args: Any, output: Any) -> None:
    """Forward hook of a layer with an activity regularizer: its penalty on every output tensor,
    divided by that tensor's batch size (0 for an empty batch, Keras's divide_no_nan)."""
    assert isinstance(layer, Layer) and layer.activity_regularizer is not None
    losses = []
    for tensor in _tensors(output):
        loss = layer.activity_regularizer(tensor)
        if tensor.dim() > 0:
            batch = tensor.shape[0]
            loss = loss / batch if batch else torch.zeros_like(loss)
        losses.append(loss)
    layer._activity_losses = losses
