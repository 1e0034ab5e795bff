"""EinsumDense: a dense projection written as an einsum equation, and the equation's analysis.

The equation is read by our own strict parser (letters, one `,`, one `->`, and `...` only where
Keras accepts it) and bounded in length; it then runs through `torch.einsum`, as Keras's torch
backend does. Kernel, bias and output shapes follow Keras's `_analyze_einsum_string`, including
its conventions: the user's `output_shape` leaves out the batch dimension (and, with a trailing
`...`, the elided dimensions), a `None` there stays `None` in the reported output shape, and with
a leading `...` the elided middle dimensions are reported in reverse order (Keras's own shape
arithmetic; the tensors themselves are right). Variance-scaling initializers draw with the fans
Keras gives EinsumDense kernels: the product of the kernel's input axes and of its output axes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.layers import keys
from app.engine.layers.base import LAYERS, Shape
from app.engine.layers.kernel import KernelLayer

MAX_EQUATION = 64
MAX_DIM = 1 << 20
MAX_KERNEL = 1 << 26
MAX_OUTPUT_DIMS = 16
# Keras's VarianceScaling family: these get EinsumDense's axis-selected fans.
_VARIANCE_SCALING = {
    "VarianceScaling",
    "GlorotUniform",
    "GlorotNormal",
    "HeUniform",
    "HeNormal",
    "LecunUniform",
    "LecunNormal",
}
_LETTERS = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class Equation:
    """A parsed EinsumDense equation: the input, kernel and output subscripts (letters only)
    and where the ellipsis stands ("none", "left" or "right")."""

    text: str
    inputs: str
    kernel: str
    output: str
    ellipsis: str


def parse_equation(value: Any, loc: Loc) -> Equation:
    """The forms Keras accepts: `ab,bc->ac`, `...ab,bc->...ac`, `ab...,bc->ac...`."""
    if not isinstance(value, str):
        raise ConfigError(loc, f"must be a string such as 'ab,bc->ac', got {value!r}")
    if len(value) > MAX_EQUATION:
        raise ConfigError(loc, f"must be at most {MAX_EQUATION} characters")
    if value.count("->") != 1 or value.count(",") != 1:
        raise ConfigError(loc, f"must look like 'ab,bc->ac' (one ',' and one '->'), got {value!r}")
    lhs, out = value.split("->")
    inp, kernel = lhs.split(",")
    ellipsis = "none"
    if inp.startswith("...") and out.startswith("..."):
        ellipsis, inp, out = "left", inp[3:], out[3:]
    elif inp.endswith("...") and out.endswith("..."):
        ellipsis, inp, out = "right", inp[:-3], out[:-3]
    for part, what in ((inp, "input"), (kernel, "kernel"), (out, "output")):
        if not _LETTERS.fullmatch(part):
            raise ConfigError(
                loc,
                f"the {what} subscripts must be letters (with '...' only at the start or the "
                f"end of both the input and the output), got {value!r}",
            )
        if len(set(part)) != len(part):
            raise ConfigError(loc, f"the {what} subscripts {part!r} repeat a letter")
    if ellipsis == "right" and len(inp) < 2:
        raise ConfigError(loc, "a trailing '...' needs at least two input letters")
    for letter in out:
        if letter not in inp and letter not in kernel:
            raise ConfigError(loc, f"output letter {letter!r} is in neither the input nor kernel")
    for letter in kernel:
        if letter not in inp and letter not in out:
            raise ConfigError(loc, f"kernel letter {letter!r} is in neither the input nor output")
    return Equation(value, inp, kernel, out, ellipsis)


@dataclass(frozen=True)
class EinsumShapes:
    kernel: tuple[int, ...]
    bias: tuple[int, ...] | None
    output: Shape
    input_axes: tuple[int, ...]
    output_axes: tuple[int, ...]


def _known(value: int | None, what: str, loc: Loc) -> int:
    if value is None:
        raise ConfigError(loc, f"the {what} needs a known size; give it in output_shape")
    return value


def analyze(
    eq: Equation, bias_axes: str | None, input_shape: Shape, partial: Sequence[int | None], loc: Loc
) -> EinsumShapes:
    """Kernel, bias and output shapes for `input_shape` (batch included), as Keras works them
    out. Errors are ConfigErrors at `loc` (the layer config) or its fields."""
    rank = len(input_shape)
    elided = rank - len(eq.inputs)
    if (eq.ellipsis == "none" and elided != 0) or elided < 0:
        raise ConfigError(
            (*loc, "equation"),
            f"input subscripts {eq.inputs!r} do not fit an input of rank {rank} {input_shape}",
        )
    full: list[int | None] = [input_shape[0], *partial]
    offset = 0
    if eq.ellipsis == "left":
        offset = elided
        # Keras inserts the elided dimensions one by one at position 1, which reverses them.
        for i in range(1, elided):
            full.insert(1, input_shape[i])
    elif eq.ellipsis == "right":
        full.extend(input_shape[rank - elided :])
    expected = offset + len(eq.output) + (elided if eq.ellipsis == "right" else 0)
    if len(full) != expected:
        raise ConfigError(
            (*loc, "output_shape"),
            f"has {len(partial)} entries; equation {eq.text!r} on input {input_shape} needs "
            f"{len(partial) + expected - len(full)}",
        )
    in_pos = {
        d: (i + elided - rank if eq.ellipsis == "left" else i) for i, d in enumerate(eq.inputs)
    }
    out_pos = {d: i + offset for i, d in enumerate(eq.output)}
    for d in eq.inputs:
        if d in out_pos:
            given, have = full[out_pos[d]], input_shape[in_pos[d]]
            if given is not None and given != have:
                raise ConfigError(
                    (*loc, "output_shape"),
                    f"gives {given} for dimension {d!r}, but the input has {have} there",
                )
    kernel: list[int] = []
    in_axes: list[int] = []
    out_axes: list[int] = []
    for i, d in enumerate(eq.kernel):
        if d in out_pos:
            kernel.append(_known(full[out_pos[d]], f"kernel dimension {d!r}", loc))
            out_axes.append(i)
        else:
            kernel.append(_known(input_shape[in_pos[d]], f"kernel dimension {d!r}", loc))
            in_axes.append(i)
    if math.prod(kernel) > MAX_KERNEL:
        raise ConfigError(loc, f"the kernel {tuple(kernel)} is larger than {MAX_KERNEL} values")
    bias = None
    if bias_axes is not None:
        first = min(eq.output.index(c) for c in bias_axes)
        bias = [
            _known(full[out_pos[c]], f"bias dimension {c!r}", loc) if c in bias_axes else 1
            for c in eq.output[first:]
        ]
        if eq.ellipsis == "right":
            bias += [1] * elided
        if math.prod(bias) > MAX_KERNEL:
            raise ConfigError(loc, f"the bias {tuple(bias)} is larger than {MAX_KERNEL} values")
    return EinsumShapes(
        tuple(kernel),
        None if bias is None else tuple(bias),
        tuple(full),
        tuple(in_axes),
        tuple(out_axes),
    )


def _required(config: Mapping[str, Any], key: str, loc: Loc) -> Any:
    if key not in config:
        raise ConfigError((*loc, key), "is required")
    return config[key]


def _read_output_shape(config: Mapping[str, Any], key: str, loc: Loc) -> tuple[int | None, ...]:
    value = _required(config, key, loc)

    def dim(v: Any) -> bool:
        return v is None or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_DIM)

    if dim(value) and value is not None:
        return (value,)
    if isinstance(value, list | tuple) and len(value) <= MAX_OUTPUT_DIMS and all(map(dim, value)):
        return tuple(value)
    raise ConfigError(
        (*loc, key),
        f"must be a positive integer or a list of them (null for a size taken from the input), "
        f"got {value!r}",
    )


def _read_equation(config: Mapping[str, Any], key: str, loc: Loc) -> Equation:
    return parse_equation(_required(config, key, loc), (*loc, key))


def _read_bias_axes(config: Mapping[str, Any], key: str, loc: Loc, default: None) -> str | None:
    bias_axes = config.get(key)
    if bias_axes is not None and (
        not isinstance(bias_axes, str) or not _LETTERS.fullmatch(bias_axes)
    ):
        raise ConfigError((*loc, key), f"must be letters, got {bias_axes!r}")
    return bias_axes


@LAYERS.add()
class EinsumDense(KernelLayer):
    # The partial output shape Keras's config gives (`output_shape` is the built layer's).
    partial_output_shape = keys.Key[tuple[int | None, ...]](
        _read_output_shape, dump=list, name="output_shape"
    )
    equation = keys.Key[Equation](_read_equation, dump=lambda eq: eq.text)
    activation = keys.activation()
    bias_axes = keys.Key[str | None](_read_bias_axes, None)
    kernel_initializer = keys.initializer("glorot_uniform")
    bias_initializer = keys.initializer("zeros")
    kernel_regularizer = keys.regularizer("kernel")
    bias_regularizer = keys.regularizer("bias")
    activity_regularizer = keys.activity_regularizer()
    kernel_constraint = keys.constraint("kernel")
    bias_constraint = keys.constraint("bias")
    quantization_config = keys.must_be_null(saved=True)
    lora_rank = keys.must_be_null()
    lora_alpha = keys.must_be_null()
    gptq_unpacked_column_size = keys.must_be_null()

    def __post_init__(self) -> None:
        super().__post_init__()
        # use_bias is not an option here: build sets it when bias_axes give the bias a shape.
        self.use_bias = False

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        eq, bias_axes = values["equation"], values["bias_axes"]
        missing = [c for c in bias_axes or "" if c not in eq.output]
        if missing:
            raise ConfigError(
                (*loc, "bias_axes"), f"{missing[0]!r} is not an output subscript of {eq.text!r}"
            )

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        shapes = analyze(self.equation, self.bias_axes, input_shape, self.partial_output_shape, loc)
        kernel_init = keys.draw(self, "kernel_initializer", loc)
        if self.kernel_initializer["class_name"] in _VARIANCE_SCALING:
            # Keras hands the initializer the kernel's input and output axes; the draws are
            # i.i.d., so drawing a (fan_in, fan_out) matrix and reshaping is the same law.
            fan_in = math.prod(shapes.kernel[i] for i in shapes.input_axes)
            fan_out = math.prod(shapes.kernel[i] for i in shapes.output_axes)
            kernel = kernel_init((fan_in, fan_out), generator).reshape(shapes.kernel)
        else:
            kernel = kernel_init(shapes.kernel, generator)
        self.add_weight("kernel", kernel)
        if shapes.bias is not None:
            self.use_bias = True
            bias_init = keys.draw(self, "bias_initializer", loc)
            self.add_weight("bias", bias_init(shapes.bias, generator))
        return shapes.output

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        y = torch.einsum(self.equation.text, x, self.kernel)
        if self.use_bias:
            y = y + self.bias
        return self.activation_fn(y)
