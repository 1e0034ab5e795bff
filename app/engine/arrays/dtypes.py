"""Input dtypes: the eight an InputLayer may declare (by Keras's names), and how a model's graph
carries a tensor of another dtype than float32 from an input to the layers that read it.

Keras converts each input to its InputLayer's dtype (here `app.engine.arrays.checks.cast_input`). A
layer then autocasts a float16, bfloat16 or float64 tensor to float32, its compute dtype; only
LayerNormalization and GroupNormalization compute on a half-float tensor in its own type, which is
refused here. Integer and bool tensors are never autocast: each layer's own call decides what they
become. A layer says how it reads them with `integer_input`:

- "cast": Keras's numbers equal the layer's on the tensor converted to float32 (Dense, the
  recurrent layers without input dropout, Rescaling, BatchNormalization), so the node converts
  it;
- "as_is": the layer gets the tensor as it is: Embedding looks the ids up, Normalization
  converts it itself (so `adapt` sees the integers, as Keras's `adapt` on them does);
- "shape": the layer only moves values (Flatten, Reshape, ...), and its output keeps the dtype,
  so the layer after it decides;
- None: Keras fails on such a tensor or computes in the integer type; the model is refused with
  a ConfigError naming the node.

`carry` walks the graph once when the model is built: it gives every tensor its dtype and marks
the nodes whose inputs are converted to float32 before the call (none in a float32 model).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch

from app.engine.config.errors import ConfigError, Loc

if TYPE_CHECKING:
    from app.engine.models.from_json import Node

INPUT_DTYPES: Mapping[str, torch.dtype] = MappingProxyType(
    {
        "float32": torch.float32,
        "float16": torch.float16,
        "bfloat16": torch.bfloat16,
        "float64": torch.float64,
        "int32": torch.int32,
        "int64": torch.int64,
        "uint8": torch.uint8,
        "bool": torch.bool,
    }
)
_NAMES = {dtype: name for name, dtype in INPUT_DTYPES.items()}
HALF_FLOATS = (torch.float16, torch.bfloat16)


def dtype_name(dtype: torch.dtype) -> str:
    """Keras's name of an input dtype ("int32")."""
    return _NAMES[dtype]


def is_integer(dtype: torch.dtype) -> bool:
    """Integer and bool dtypes: the ones no layer autocasts."""
    return not dtype.is_floating_point


def policy_name(value: Any) -> Any:
    """The dtype name a config's `dtype` holds: a string, or the name inside Keras's
    DTypePolicy object; anything else as it is."""
    if isinstance(value, Mapping):
        inner = value.get("config")
        return inner.get("name") if isinstance(inner, Mapping) else None
    return value


def input_dtype(value: Any, loc: Loc) -> torch.dtype:
    """An InputLayer's `dtype` (absent or null: float32)."""
    if value is None:
        return torch.float32
    name = policy_name(value)
    if isinstance(name, str) and name in INPUT_DTYPES:
        return INPUT_DTYPES[name]
    raise ConfigError(loc, f"must be one of {sorted(INPUT_DTYPES)}, got {value!r}")


def carry(nodes: Sequence[Node], input_dtypes: Sequence[torch.dtype]) -> list[torch.dtype]:
    """Every tensor's dtype, slot by slot (the inputs' first), and each node's `cast` set where
    its inputs are converted to float32 before the call. A layer that cannot read the dtype it
    gets is a ConfigError at its node."""
    dtypes = list(input_dtypes)
    for node in nodes:
        slots = [node.inputs] if isinstance(node.inputs, int) else node.inputs
        got = [dtypes[s] for s in slots if s is not None]
        while len(dtypes) <= node.out:
            dtypes.append(torch.float32)
        layer = node.layer
        if layer.output_dtype is not None:  # a Keras op: reads any tensor as it is
            dtypes[node.out] = layer.output_dtype
            continue
        odd = [d for d in got if d != torch.float32]
        if not odd:
            continue
        rule = layer.integer_input_rule()
        for dtype in odd:
            if dtype in HALF_FLOATS and not layer.half_float_input:
                raise ConfigError(
                    node.loc,
                    f"{layer.class_name} computes on {_a(dtype)} tensor in "
                    "that type in Keras (it does not autocast to float32), which is not "
                    "supported; read the input as float32 or put a layer before it",
                )
            if is_integer(dtype) and rule is None:
                raise ConfigError(
                    node.loc,
                    f"{layer.class_name} cannot read {_a(dtype)} tensor "
                    "(Keras fails on it or computes in the integer type); convert it first, "
                    "e.g. with Rescaling, or give the input dtype float32",
                )
        if rule in ("as_is", "shape") and all(is_integer(d) for d in odd):
            if rule == "shape":  # moved, not converted: the next layer decides
                dtypes[node.out] = odd[0]
            continue
        node.cast = True  # half and double floats are autocast by every layer
    return dtypes


def _a(dtype: torch.dtype) -> str:
    name = dtype_name(dtype)
    return f"an {name}" if name.startswith("int") else f"a {name}"


def to_float32(value: Any) -> Any:
    """A node's input (a tensor, or a list with None where a named input is absent) as float32."""
    if isinstance(value, torch.Tensor):
        return value if value.dtype == torch.float32 else value.to(torch.float32)
    return [to_float32(v) for v in value] if isinstance(value, list) else value
