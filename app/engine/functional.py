"""Functional graphs: Keras 3's `inbound_nodes` read into ordered nodes of built layers.

Each layer entry lists the calls made to it (`inbound_nodes`, in call order); a call's tensor
arguments name the tensors they consume by `keras_history` = [layer, node index, tensor index].
Merge layers get a list of tensors as their one argument; layers with named tensor arguments
(MultiHeadAttention's query, value, key) get them positionally or by keyword. The nodes are put in
an order where every input comes first (a cycle or a missing tensor is a ConfigError), and each
layer is built at its first call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from app.engine import dtypes
from app.engine.errors import ConfigError, Loc
from app.engine.layers import Layer, Shape
from app.engine.model_config import (
    MAX_NODES,
    Graph,
    Node,
    NodeInputs,
    entry_config,
    input_layer,
    make_layer,
)
from app.engine.params import get_str

Key = tuple[str, int]  # (layer name, node index): one tensor of the graph
# Call keyword arguments Keras records that carry nothing when null.
_NULL_KWARGS = ("mask",)


@dataclass
class _RawNode:
    layer: Layer
    index: int
    inputs: Key | list[Key | None]
    options: dict[str, Any]
    loc: Loc


def _ref(value: Any, loc: Loc) -> Key:
    """A serialized Keras tensor (or a bare [layer, node, tensor] triple) as its key."""
    history = value
    if isinstance(value, Mapping):
        if value.get("class_name") != "__keras_tensor__":
            raise ConfigError(loc, "must be a Keras tensor ({class_name: '__keras_tensor__'})")
        config = value.get("config")
        history = config.get("keras_history") if isinstance(config, Mapping) else None
        loc = (*loc, "config", "keras_history")
    return _triple(history, loc)


def _triple(value: Any, loc: Loc) -> Key:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 3
        or not isinstance(value[0], str)
        or any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in value[1:])
    ):
        raise ConfigError(loc, f"must be [layer name, node index, tensor index], got {value!r}")
    if value[2] != 0:
        raise ConfigError(
            loc, "only a layer's first output can be used (layers with several outputs are "
            "not supported)"
        )  # fmt: skip
    return value[0], value[1]


def _call_inputs(layer: Layer, node: Any, loc: Loc) -> tuple[Key | list[Key | None], dict]:
    if not isinstance(node, Mapping):
        raise ConfigError(loc, "a node is an object with args and kwargs")
    unknown = set(node) - {"args", "kwargs"}
    if unknown:
        raise ConfigError((*loc, sorted(unknown)[0]), "unknown key; a node has args and kwargs")
    args, kwargs = node.get("args") or [], node.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, Mapping):
        raise ConfigError(loc, "args must be a list and kwargs an object")
    options: dict[str, Any] = {}
    named: dict[str, Key | None] = {}
    for key, value in kwargs.items():
        kloc = (*loc, "kwargs", key)
        if key in layer.input_names:
            named[key] = None if value is None else _ref(value, kloc)
        elif key in layer.call_options:
            options[key] = value
        elif key in _NULL_KWARGS and value is None:
            continue
        elif key == "training":
            # Keras records it at every call of a layer whose call takes it (false when the
            # caller gave none); its fit, evaluate and predict replace it with the mode they
            # run in, whatever was recorded, and so does every run here.
            if value is not None and not isinstance(value, bool):
                raise ConfigError(kloc, f"must be true, false or null, got {value!r}")
            continue
        else:
            raise ConfigError(kloc, f"{layer.class_name} takes no call argument {key!r} here")
    if layer.input_names:
        if not 1 <= len(args) <= len(layer.input_names):
            raise ConfigError((*loc, "args"), f"expected 1 to {len(layer.input_names)} tensors")
        slots: list[Key | None] = [_ref(a, (*loc, "args", i)) for i, a in enumerate(args)]
        slots += [None] * (len(layer.input_names) - len(slots))
        for key, ref in named.items():
            i = layer.input_names.index(key)
            if i < len(args):
                raise ConfigError((*loc, "kwargs", key), "is also given positionally")
            slots[i] = ref
        return slots, options
    if len(args) != 1:
        raise ConfigError((*loc, "args"), f"{layer.class_name} takes one input, got {len(args)}")
    if layer.multi_input:
        if not isinstance(args[0], list) or not args[0]:
            raise ConfigError((*loc, "args", 0), f"{layer.class_name} takes a list of tensors")
        return [_ref(a, (*loc, "args", 0, i)) for i, a in enumerate(args[0])], options
    return _ref(args[0], (*loc, "args", 0)), options


def _endpoints(value: Any, loc: Loc) -> tuple[list[str], list[Key], bool]:
    """input_layers / output_layers: a flat triple, a list of triples, or name -> triple."""
    if isinstance(value, Mapping):
        if not value:
            raise ConfigError(loc, "must not be empty")
        # Keras flattens a dict in sorted key order: that order is the model's input or
        # output order (lists of losses, weights, metrics and arrays follow it).
        names = sorted(str(k) for k in value)
        keys = [_triple(value[k], (*loc, k)) for k in names]
        return names, keys, True
    if isinstance(value, list) and value and isinstance(value[0], str):
        key = _triple(value, loc)
        return [key[0]], [key], False
    if not isinstance(value, list) or not value:
        raise ConfigError(loc, "must be [layer, node, tensor] or a list of them")
    keys = [_triple(v, (*loc, i)) for i, v in enumerate(value)]
    return [k[0] for k in keys], keys, False


def functional_graph(config: Mapping[str, Any], generator: torch.Generator) -> Graph:
    name = get_str(config, "name", ("config",), "functional")
    used: set[str] = set()
    inputs: dict[str, tuple[Shape, torch.dtype, Loc]] = {}
    layers: list[Layer] = []
    raw: list[_RawNode] = []
    for index, entry in enumerate(config["layers"]):
        loc: Loc = ("config", "layers", index)
        if not isinstance(entry, Mapping):
            raise ConfigError(loc, "a layer is an object with class_name and config")
        entry_name = entry.get("name") or entry_config(entry, loc).get("name")
        if not isinstance(entry_name, str) or not entry_name:
            raise ConfigError((*loc, "name"), "every layer of a Functional model needs a name")
        nodes = entry.get("inbound_nodes") or []
        if not isinstance(nodes, list):
            raise ConfigError((*loc, "inbound_nodes"), "must be a list")
        if entry.get("class_name") == "InputLayer":
            if nodes:
                raise ConfigError((*loc, "inbound_nodes"), "an InputLayer has no inbound nodes")
            if entry_name in used:
                raise ConfigError((*loc, "name"), f"layer name {entry_name!r} is used twice")
            used.add(entry_name)
            shape, dtype = input_layer(entry_config(entry, loc), (*loc, "config"))
            inputs[entry_name] = (shape, dtype, loc)
            continue
        layer = make_layer(entry, loc, used, entry_name)
        layers.append(layer)
        if not nodes:
            raise ConfigError((*loc, "inbound_nodes"), "the layer is never called")
        for n, node in enumerate(nodes):
            nloc = (*loc, "inbound_nodes", n)
            refs, options = _call_inputs(layer, node, nloc)
            check = getattr(layer, "check_options", None)
            if check is not None:  # call options are checked now, not in the middle of a run
                check(options, nloc)
            raw.append(_RawNode(layer, n, refs, options, nloc))
        if len(raw) > MAX_NODES:
            raise ConfigError((*loc, "inbound_nodes"), f"the limit is {MAX_NODES} layer calls")
    in_names, in_keys, dict_inputs = _endpoints(config.get("input_layers"),
                                                ("config", "input_layers"))  # fmt: skip
    slots: dict[Key, int] = {}
    for i, key in enumerate(in_keys):
        if key[0] not in inputs or key[1] != 0:
            raise ConfigError(("config", "input_layers", i), f"{key[0]!r} is not an InputLayer")
        if key in slots:
            raise ConfigError(("config", "input_layers", i), f"{key[0]!r} is listed twice")
        slots[key] = i
    for input_name, (_, _, iloc) in inputs.items():
        if (input_name, 0) not in slots:
            raise ConfigError(iloc, f"InputLayer {input_name!r} is not in input_layers")
    shapes: list[Shape] = [inputs[k[0]][0] for k in in_keys]
    ordered = _order(raw, set(slots))
    built: dict[str, Any] = {}
    nodes_out: list[Node] = []
    for node in ordered:
        node_slots: NodeInputs = (
            [None if k is None else slots[k] for k in node.inputs]
            if isinstance(node.inputs, list)
            else slots[node.inputs]
        )
        in_shape: Any = (
            [None if s is None else shapes[s] for s in node_slots]
            if isinstance(node_slots, list)
            else shapes[node_slots]
        )
        layer = node.layer
        if layer.name not in built:
            layer.output_shape = layer.build(in_shape, generator, (*node.loc[:3], "config"))
            built[layer.name] = in_shape
        elif built[layer.name] != in_shape:
            raise ConfigError(
                node.loc,
                f"shared layer {layer.name!r} was built for input shape {built[layer.name]} "
                f"and is called here on {in_shape}; a shared layer takes one shape",
            )
        slots[(layer.name, node.index)] = len(shapes)
        nodes_out.append(
            Node(layer, node_slots, node.options, len(shapes), node.index, loc=node.loc)
        )
        shapes.append(layer.output_shape)
    out_names, out_keys, dict_outputs = _endpoints(config.get("output_layers"),
                                                   ("config", "output_layers"))  # fmt: skip
    out_slots = []
    for i, key in enumerate(out_keys):
        if key not in slots:
            raise ConfigError(("config", "output_layers", i), f"no tensor {list(key)} exists")
        out_slots.append(slots[key])
    if len(set(out_names)) != len(out_names):
        raise ConfigError(("config", "output_layers"), "output names must differ")
    input_dtypes = [inputs[k[0]][1] for k in in_keys]
    return Graph(
        name=name, kind="Functional", input_names=in_names, input_shapes=shapes[: len(in_keys)],
        layers=_keras_layer_order(raw, out_keys), nodes=nodes_out, output_names=out_names,
        output_slots=out_slots,
        shapes=shapes, dict_inputs=dict_inputs, dict_outputs=dict_outputs,
        input_dtypes=input_dtypes, dtypes=dtypes.carry(nodes_out, input_dtypes),
    )  # fmt: skip


def _order(raw: list[_RawNode], available: set[Key]) -> list[_RawNode]:
    """The nodes in an order where each comes after the nodes it reads (config order kept
    where free); a tensor that no node produces, or a cycle, is a ConfigError."""
    produced = {(n.layer.name, n.index): n for n in raw}
    waiting: dict[Key, list[_RawNode]] = {}
    missing: dict[int, int] = {}
    ready: list[_RawNode] = []
    for node in raw:
        deps = {k for k in (node.inputs if isinstance(node.inputs, list) else [node.inputs])
                if k is not None and k not in available}  # fmt: skip
        for k in deps:
            if k not in produced:
                raise ConfigError(node.loc, f"reads tensor {[*k, 0]}, which no layer produces")
            waiting.setdefault(k, []).append(node)
        missing[id(node)] = len(deps)
        if not deps:
            ready.append(node)
    ordered: list[_RawNode] = []
    while ready:
        node = ready.pop(0)
        ordered.append(node)
        for follower in waiting.get((node.layer.name, node.index), []):
            missing[id(follower)] -= 1
            if missing[id(follower)] == 0:
                ready.append(follower)
    if len(ordered) != len(raw):
        stuck = next(n for n in raw if missing[id(n)] > 0)
        raise ConfigError(stuck.loc, "the graph has a cycle through this call")
    return ordered


def _keras_layer_order(raw: list[_RawNode], outputs: list[Key]) -> list[Layer]:
    """The layers in the order Keras's Functional model lists them (its `map_graph`), which is
    the order of `get_weights()` and of a `.keras` file's weight groups: by depth from the
    outputs, deepest first, ties broken by when a depth-first walk from the outputs first
    reaches the layer. Keras writes its configs in this order; a hand-written config in another
    order still gets Keras's."""
    by_key = {(n.layer.name, n.index): n for n in raw}

    def parents(node: _RawNode) -> list[Key]:
        refs = node.inputs if isinstance(node.inputs, list) else [node.inputs]
        return [k for k in refs if k is not None]

    first_seen: dict[str, int] = {}
    post_order: list[Key] = []
    done: set[Key] = set()

    def walk(key: Key) -> None:  # iterative post-order DFS (graphs may be deep)
        stack: list[tuple[Key, bool]] = [(key, False)]
        while stack:
            current, expanded = stack.pop()
            if current in done:
                continue
            node = by_key.get(current)
            if expanded or node is None:
                first_seen.setdefault(current[0], len(first_seen))
                done.add(current)
                post_order.append(current)
                continue
            first_seen.setdefault(current[0], len(first_seen))
            stack.append((current, True))
            stack.extend((p, False) for p in reversed(parents(node)) if p not in done)

    for key in outputs:
        walk(key)
    node_depth: dict[Key, int] = {}
    layer_depth: dict[str, int] = {}
    for key in reversed(post_order):
        depth = max(node_depth.setdefault(key, 0), layer_depth.get(key[0], 0))
        layer_depth[key[0]] = depth
        node_depth[key] = depth
        node = by_key.get(key)
        for parent in parents(node) if node is not None else []:
            node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    layers = {n.layer.name: n.layer for n in raw}
    known = [name for name in layers if name in layer_depth]
    ordered = sorted(known, key=lambda name: (-layer_depth[name], first_seen[name]))
    unused = [name for name in layers if name not in layer_depth]  # not on a path to an output
    return [layers[name] for name in [*ordered, *unused]]
