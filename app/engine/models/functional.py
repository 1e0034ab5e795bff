"""Functional graphs: Keras 3's `inbound_nodes` read into ordered nodes of built layers.

Each layer entry lists the calls made to it (`inbound_nodes`, in call order); a call's tensor
arguments name the tensors they consume by `keras_history` = [layer, node index, tensor index].
Merge layers get a list of tensors as their one argument; layers with named tensor arguments
(MultiHeadAttention's query, value, key) get them positionally or by keyword. A call's `mask`
argument names the tensor Keras uses as that call's mask; Keras's op nodes that make such masks are
read by app.engine.models.op_nodes. The nodes are put in an order where every input comes first (a
cycle or a missing tensor is a ConfigError), and each layer is built at its first call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.arrays import dtypes
from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_str
from app.engine.layers.base import Layer, Shape
from app.engine.models.from_json import (
    MAX_NODES,
    Graph,
    Node,
    entry_config,
    input_layer,
    make_layer,
)
from app.engine.models.graph_order import Key, RawNode, Refs, keras_order, run_order
from app.engine.models.numpy_ops import Op
from app.engine.models.op_nodes import check_reads, is_op_entry, make_op


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
            loc,
            "only a layer's first output can be used (layers with several outputs are "
            "not supported)",
        )
    return value[0], value[1]


def _mask(layer: Layer, value: Any, loc: Loc) -> Refs:
    """A call's `mask` argument: a tensor, or for a layer called on a list, a list of them
    (null where an input has none)."""
    if not (layer.uses_mask and layer.mask_argument):
        raise ConfigError(loc, f"{layer.class_name} takes no call argument 'mask' here")
    if not layer.multi_input:
        return _ref(value, loc)
    if not isinstance(value, list):
        raise ConfigError(loc, f"{layer.class_name} takes a list of masks, one per input")
    return [None if v is None else _ref(v, (*loc, i)) for i, v in enumerate(value)]


def _call_inputs(layer: Layer, node: Any, loc: Loc) -> tuple[Refs, dict, Refs | None]:
    if not isinstance(node, Mapping):
        raise ConfigError(loc, "a node is an object with args and kwargs")
    unknown = set(node) - {"args", "kwargs"}
    if unknown:
        raise ConfigError((*loc, sorted(unknown)[0]), "unknown key; a node has args and kwargs")
    args, kwargs = node.get("args") or [], node.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, Mapping):
        raise ConfigError(loc, "args must be a list and kwargs an object")
    options: dict[str, Any] = {}
    if isinstance(layer, Op):  # NotEqual's number follows its tensor
        args, options = layer.read_constants(args, loc)
    named: dict[str, Key | None] = {}
    mask: Refs | None = None
    for key, value in kwargs.items():
        kloc = (*loc, "kwargs", key)
        if key in layer.input_names:
            named[key] = None if value is None else _ref(value, kloc)
        elif key in layer.call_options:
            options[key] = value
        elif key == "mask":
            # Keras records the mask it propagated into a call whose layer takes one; given,
            # it is that call's mask, whatever the inputs carry (Layer.__call__ fills `mask`
            # from them only when it is None).
            mask = None if value is None else _mask(layer, value, kloc)
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
        return slots, options, mask
    if len(args) != 1:
        raise ConfigError((*loc, "args"), f"{layer.class_name} takes one input, got {len(args)}")
    if layer.multi_input:
        if not isinstance(args[0], list) or not args[0]:
            raise ConfigError((*loc, "args", 0), f"{layer.class_name} takes a list of tensors")
        return [_ref(a, (*loc, "args", 0, i)) for i, a in enumerate(args[0])], options, mask
    return _ref(args[0], (*loc, "args", 0)), options, mask


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
    raw: list[RawNode] = []
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
        if is_op_entry(entry):
            layer: Layer = make_op(entry, loc, used, entry_name)
        else:
            layer = make_layer(entry, loc, used, entry_name)
        if not nodes:
            raise ConfigError((*loc, "inbound_nodes"), "the layer is never called")
        for n, node in enumerate(nodes):
            nloc = (*loc, "inbound_nodes", n)
            refs, options, mask = _call_inputs(layer, node, nloc)
            check = getattr(layer, "check_options", None)
            if check is not None:  # call options are checked now, not in the middle of a run
                check(options, nloc)
            raw.append(RawNode(layer, n, refs, options, nloc, mask))
        if len(raw) > MAX_NODES:
            raise ConfigError((*loc, "inbound_nodes"), f"the limit is {MAX_NODES} layer calls")
    in_names, in_keys, dict_inputs = _endpoints(
        config.get("input_layers"), ("config", "input_layers")
    )
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
    bools = {i for i, k in enumerate(in_keys) if inputs[k[0]][1] == torch.bool}
    masks: set[int] = set()  # the op nodes' outputs
    built: dict[str, Any] = {}
    nodes_out: list[Node] = []
    for node in run_order(raw, set(slots)):
        node_slots, mask_slots = _slots(node.inputs, slots), _slots(node.mask, slots)
        in_shape: Any = (
            [None if s is None else shapes[s] for s in node_slots]
            if isinstance(node_slots, list)
            else shapes[node_slots]
        )
        layer = node.layer
        check_reads(layer, node_slots, mask_slots, shapes, bools, masks, node.loc)
        if layer.name not in built:
            layer.output_shape = layer.build(in_shape, generator, (*node.loc[:3], "config"))
            built[layer.name] = in_shape
        elif built[layer.name] != in_shape:
            raise ConfigError(
                node.loc,
                f"shared layer {layer.name!r} was built for input shape {built[layer.name]} "
                f"and is called here on {in_shape}; a shared layer takes one shape",
            )
        slots[node.key] = len(shapes)
        if isinstance(layer, Op):
            masks.add(len(shapes))
            bools.add(len(shapes))
        nodes_out.append(
            Node(
                layer,
                node_slots,
                node.options,
                len(shapes),
                node.index,
                loc=node.loc,
                mask=mask_slots,
            )
        )
        shapes.append(layer.output_shape)
    out_names, out_keys, dict_outputs = _endpoints(
        config.get("output_layers"), ("config", "output_layers")
    )
    out_slots = []
    for i, key in enumerate(out_keys):
        if key not in slots:
            raise ConfigError(("config", "output_layers", i), f"no tensor {list(key)} exists")
        if slots[key] in masks:
            raise ConfigError(
                ("config", "output_layers", i),
                f"{key[0]!r} is a Keras op making a mask; a model's outputs come from layers",
            )
        out_slots.append(slots[key])
    if len(set(out_names)) != len(out_names):
        raise ConfigError(("config", "output_layers"), "output names must differ")
    input_dtypes = [inputs[k[0]][1] for k in in_keys]
    operations = keras_order(raw, out_keys)
    return Graph(
        name=name,
        kind="Functional",
        input_names=in_names,
        input_shapes=shapes[: len(in_keys)],
        layers=[op for op in operations if not isinstance(op, Op)],
        nodes=nodes_out,
        output_names=out_names,
        output_slots=out_slots,
        shapes=shapes,
        dict_inputs=dict_inputs,
        dict_outputs=dict_outputs,
        input_dtypes=input_dtypes,
        dtypes=dtypes.carry(nodes_out, input_dtypes),
        operations=operations,
    )


def _slots(refs: Refs | None, slots: dict[Key, int]) -> Any:
    """Tensor keys as the slots they fill (None stays None)."""
    if isinstance(refs, list):
        return [None if k is None else slots[k] for k in refs]
    return None if refs is None else slots[refs]
