"""Keras op nodes as a Functional graph reads them: which entries of a model's layers are ops, how
one is looked up (app.engine.models.numpy_ops holds the closed set), and what each call may read.

An op's output is a mask: another op may read it, and a layer may take it as its call's `mask`
argument, but no layer reads it as data and no model returns it. A `mask` argument is a bool
tensor (an op's output, or a bool input) of the shape its layer takes a mask in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.registry import check_keras_module, known_keys
from app.engine.layers import LAYERS, Layer, Shape
from app.engine.models.from_json import NodeInputs
from app.engine.models.numpy_ops import OP_MODULE, OPS, Op, same_dim

_ENTRY_KEYS = ("module", "class_name", "config", "registered_name", "name", "inbound_nodes")


def is_op_entry(entry: Mapping[str, Any]) -> bool:
    """An entry of a Functional model's layers that names an op: a module of Keras's ops, or
    (hand-written, without a module) the name of one of the ops that no layer has."""
    module, class_name = entry.get("module"), entry.get("class_name")
    if isinstance(module, str) and module.startswith("keras.src.ops."):
        return True
    if module is not None or not isinstance(class_name, str):
        return False
    return class_name in OPS.all_names() and class_name not in LAYERS.all_names()


def make_op(entry: Mapping[str, Any], loc: Loc, used: set[str], name: str) -> Op:
    """Look up and configure one op entry: its module must be Keras's numpy ops, its class one
    of the seven, and it must be called exactly once."""
    known_keys(entry, _ENTRY_KEYS, loc)
    check_keras_module(entry, loc)
    module, class_name = entry.get("module"), entry.get("class_name")
    if not isinstance(class_name, str) or class_name not in OPS.all_names():
        raise ConfigError(
            (*loc, "class_name"),
            f"unknown Keras op {class_name!r} (node {name!r}); the ops "
            f"Keras writes for masks are read: {', '.join(OPS.names())}",
        )
    if module not in (None, OP_MODULE):
        raise ConfigError(
            (*loc, "module"),
            f"expected {OP_MODULE!r} for the Keras op {class_name!r}, got {module!r}",
        )
    nodes = entry.get("inbound_nodes")
    if not isinstance(nodes, list) or len(nodes) != 1:
        raise ConfigError((*loc, "inbound_nodes"), "a Keras op node is called exactly once")
    config = entry.get("config") or {}
    if not isinstance(config, Mapping):
        raise ConfigError((*loc, "config"), "must be an object")
    if name in used:
        raise ConfigError((*loc, "name"), f"layer name {name!r} is used twice")
    used.add(name)
    op = OPS.lookup(class_name, (*loc, "class_name")).from_config(
        config, (*loc, "config"), name=name
    )
    assert isinstance(op, Op)
    return op


def check_reads(
    layer: Layer,
    inputs: NodeInputs,
    mask: NodeInputs | None,
    shapes: list[Shape],
    bools: set[int],
    masks: set[int],
    loc: Loc,
) -> None:
    """What a call reads: an op's output (a slot in `masks`) only as another op's input or as a
    layer's `mask` argument; a mask argument only from a bool tensor (`bools`: ops' outputs and
    bool inputs) of the shape the layer takes."""
    read = [inputs] if isinstance(inputs, int) else [s for s in inputs if s is not None]
    if isinstance(layer, Op):
        if layer.reads_masks and any(s not in bools for s in read):
            raise ConfigError(loc, f"{layer.class_name} reads masks (bool tensors) only")
    elif any(s in masks for s in read):
        raise ConfigError(
            loc,
            "reads a mask (the output of a Keras op) as data; a mask can "
            "only be a layer's `mask` argument or an op's input",
        )
    if mask is None:
        return
    mloc = (*loc, "kwargs", "mask")
    given = [mask] if isinstance(mask, int) else mask
    if isinstance(inputs, list) != isinstance(mask, list) or len(given) != len(read):
        raise ConfigError(mloc, "must be one mask per input tensor")
    if any(s is not None and s not in bools for s in given):
        raise ConfigError(mloc, "must be a boolean tensor: a Keras op's output or a bool input")
    in_shape = shapes[inputs] if isinstance(inputs, int) else [shapes[s] for s in read]
    expected = layer.mask_shape(in_shape)
    if expected is None:
        return
    wanted = [expected] if isinstance(mask, int) else expected
    for slot, want in zip(given, wanted, strict=True):
        got = None if slot is None else shapes[slot]
        if got is not None and (
            len(got) != len(want) or not all(same_dim(a, b) for a, b in zip(got, want, strict=True))
        ):
            raise ConfigError(
                mloc, f"{layer.class_name} takes a mask of shape {list(want)} here, got {list(got)}"
            )
