"""Keras op nodes: the closed set of `keras.src.ops.numpy` operations that Keras records in a
Functional graph when it carries a mask from layer to layer (app.engine.models.op_nodes reads them).

A Functional model that Keras builds holds its masks as tensors of the graph. `Embedding
(mask_zero=True)` records `NotEqual(ids, 0)`; `Masking` records `Any(NotEqual(x, mask_value),
axis=-1)`; the elementwise merge layers `LogicalOr` of their inputs' masks; `Concatenate` widens
each input's mask to the input (`ExpandDims`, `ZerosLike`, `LogicalOr`; `OnesLike` for an input
without one), joins them (the op `Concatenate`) and reduces them (`Any`). Each op is an entry of
the model's layers whose `module` is "keras.src.ops.numpy", called once, and the layer that takes
the mask gets it as its call's `mask` argument. These seven ops are read here, each with its
config and arguments checked; any other op is refused, so a request never names code to run.

An op runs like a layer without weights (built for its input shapes, called by the graph in
order), but it is not one of the model's layers: as in Keras's `model.layers`, the summary, the
weights and a `.keras` file's weight groups leave it out. Its output is a bool tensor, which only
another op or a layer's `mask` argument may read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from app.engine.config.declared import Key, boolean
from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_int
from app.engine.config.registry import Registry, known_keys
from app.engine.layers.base import Layer, Shape

OP_MODULE = "keras.src.ops.numpy"
OPS: Registry[Op] = Registry("Keras op")


class Op(Layer):
    """A Keras op node: no weights, a bool output (a mask)."""

    keras_module = OP_MODULE
    output_dtype = torch.bool
    integer_input = "as_is"
    mask_argument = False  # Keras's ops take no mask
    #: It reads masks (bool tensors) only; False for the ops that make one from any tensor.
    reads_masks: ClassVar[bool] = True
    #: The constant arguments after the tensor, by Keras's argument names (NotEqual's `x2`).
    constants: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, ("name", *cls.declared_keys), loc)
        return cls(name=name, **cls.read_values(config, loc))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.declared_config()}

    def read_constants(self, args: list[Any], loc: Loc) -> tuple[list[Any], dict[str, Any]]:
        """A node's arguments split into its tensors and its constants (by name)."""
        if not self.constants:
            return args, {}
        if len(args) != 1 + len(self.constants):
            raise ConfigError(
                (*loc, "args"),
                f"{self.class_name} takes a tensor and {len(self.constants)} constant(s)",
            )
        values = {}
        for i, (key, value) in enumerate(zip(self.constants, args[1:], strict=True), 1):
            finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
            if not finite or (isinstance(value, int) and abs(value) >= 2**63):
                raise ConfigError(
                    (*loc, "args", i), f"must be a number or a boolean, got {value!r}"
                )
            values[key] = value
        return args[:1], values


def _axis(value: int, rank: int, loc: Loc) -> int:
    """An axis of a rank-`rank` tensor (batch included) counted from 0; never the batch axis."""
    if not -rank <= value < rank or value % rank == 0:
        raise ConfigError(
            loc,
            f"must be an axis of a rank-{rank} tensor other than the batch "
            f"axis (1 to {rank - 1}, or -1 to {1 - rank}), got {value}",
        )
    return value % rank


def same_dim(a: int | None, b: int | None) -> bool:
    """Two dimensions that may be the same (None: unknown)."""
    return a is None or b is None or a == b


@OPS.add()
class NotEqual(Op):
    """`x != x2` elementwise, with a number `x2` (Embedding's 0, Masking's mask_value)."""

    reads_masks = False
    constants = ("x2",)

    def forward(self, x: torch.Tensor, training: bool = False, x2: Any = 0) -> torch.Tensor:
        return torch.ne(x, x2)


def _read_axis(config: Mapping[str, Any], key: str, loc: Loc) -> int:
    axis: int | None = get_int(config, key, loc, None)
    if axis is None:
        raise ConfigError((*loc, key), "is required: one axis (an integer)")
    return axis


def _read_mask_dtype(config: Mapping[str, Any], key: str, loc: Loc, default: str) -> str:
    if config.get(key) != "bool":
        raise ConfigError((*loc, key), f"must be 'bool' (a mask), got {config.get(key)!r}")
    return "bool"


class _AlongAxis(Op):
    """An op along one `axis` (Keras writes it; never the batch axis)."""

    axis = Key[int](_read_axis)

    def __post_init__(self) -> None:
        self._dim = 0


@OPS.register("Any")
class AnyOp(_AlongAxis):
    """Whether any entry along `axis` is true (Masking: a step is kept if any feature is)."""

    class_name = "Any"
    keepdims = boolean(False)

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        self._dim = _axis(self.axis, len(input_shape), (*loc, "axis"))
        out = list(input_shape)
        if self.keepdims:
            out[self._dim] = 1
        else:
            del out[self._dim]
        return tuple(out)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return torch.any(x, dim=self._dim, keepdim=self.keepdims)


@OPS.add()
class LogicalOr(Op):
    """`x1 or x2` elementwise, broadcast (the merge layers' masks; a widened mask)."""

    input_names = ("x1", "x2")

    def build(self, input_shape: Any, generator: torch.Generator, loc: Loc) -> Shape:
        a, b = input_shape
        if a is None or b is None:
            raise ConfigError(loc, "LogicalOr takes two tensors")
        rank = max(len(a), len(b))
        a, b = (1,) * (rank - len(a)) + a, (1,) * (rank - len(b)) + b
        out: list[int | None] = []
        for x, y in zip(a, b, strict=True):
            if not (same_dim(x, y) or 1 in (x, y)):
                raise ConfigError(
                    loc,
                    f"shapes {list(input_shape[0])} and {list(input_shape[1])} do not broadcast",
                )
            out.append(y if x in (1, None) and y != 1 else x)
        return tuple(out)

    def forward(self, x: list[torch.Tensor], training: bool = False) -> torch.Tensor:
        return torch.logical_or(x[0], x[1])


@OPS.add()
class ExpandDims(_AlongAxis):
    """A new axis of size 1 (a step mask made to broadcast over features)."""

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        self._dim = _axis(self.axis, len(input_shape) + 1, (*loc, "axis"))
        return (*input_shape[: self._dim], 1, *input_shape[self._dim :])

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return torch.unsqueeze(x, self._dim)


class _Filled(Op):
    """A bool tensor of the input's shape, every entry the same."""

    reads_masks = False
    dtype = Key[str](_read_mask_dtype, "bool")
    fill: ClassVar[bool]

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return torch.full_like(x, self.fill, dtype=torch.bool)


@OPS.add()
class ZerosLike(_Filled):
    fill = False


@OPS.add()
class OnesLike(_Filled):
    fill = True


@OPS.register("Concatenate")
class ConcatenateOp(_AlongAxis):
    """Masks joined along `axis` (the op, not the layer: its module tells them apart)."""

    class_name = "Concatenate"
    multi_input = True

    def build(self, input_shape: Any, generator: torch.Generator, loc: Loc) -> Shape:
        first = input_shape[0]
        self._dim = _axis(self.axis, len(first), (*loc, "axis"))
        out = list(first)
        for shape in input_shape[1:]:
            if len(shape) != len(first) or not all(
                same_dim(a, b)
                for i, (a, b) in enumerate(zip(first, shape, strict=True))
                if i != self._dim
            ):
                raise ConfigError(
                    loc, f"cannot join shapes {[list(s) for s in input_shape]} on axis {self.axis}"
                )
            size, total = shape[self._dim], out[self._dim]
            out[self._dim] = None if total is None or size is None else total + size
        return tuple(out)

    def forward(self, x: list[torch.Tensor], training: bool = False) -> torch.Tensor:
        return torch.cat(x, dim=self._dim)
