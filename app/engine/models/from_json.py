"""Reading Keras model JSON (Sequential and Functional) into a graph of built layers.

Both kinds become the same thing: input slots, then nodes in an order where every node's inputs
come before it, each node one call of a layer whose output fills the next slot. A Sequential is a
chain; a Functional graph comes from each layer's `inbound_nodes`, where a tensor is named by
`keras_history` = [layer name, node index, tensor index] as Keras 3 writes it. A layer called
more than once (shared) is built at its first call and keeps one set of weights.

Layers are looked up in the closed LAYERS registry; Lambda layers and custom objects are refused,
since they would mean running code a request supplied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from app.engine.arrays import dtypes
from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_str
from app.engine.config.registry import check_keras_module, known_keys, to_snake_case
from app.engine.layers import LAYERS, Layer, Shape
from app.engine.layers.base import check_dtype

MAX_NODES = 4000


@dataclass(frozen=True)
class Limits:
    """What one model may hold (the service takes them from its settings)."""

    params: int = 50_000_000
    layers: int = 1000  # nested layers (a Bidirectional's RNNs) count too
    depth: int = 8  # layers inside layers inside ...
    tensor_elements: int = 1 << 26  # one sample's elements in any tensor of the graph


MODEL_KEYS = ("module", "class_name", "config", "registered_name", "build_config", "compile_config")
_SEQ_KEYS = ("name", "trainable", "dtype", "layers", "build_input_shape")
_FUNC_KEYS = ("name", "trainable", "dtype", "layers", "input_layers", "output_layers")
_ENTRY_KEYS = (
    "module",
    "class_name",
    "config",
    "registered_name",
    "build_config",
    "name",
    "inbound_nodes",
    "compile_config",  # a nested model's entry carries one; training uses the outer compile
)
_INPUT_KEYS = (
    "batch_shape",
    "batch_input_shape",
    "shape",
    "input_shape",
    "dtype",
    "sparse",
    "ragged",
    "name",
    "optional",
)
_REFUSED = {
    "Lambda": "Lambda layers hold Python code, which the service never runs; use built-in layers",
    "TFSMLayer": "saved TensorFlow graphs cannot be loaded; use built-in layers",
}

Slot = int
NodeInputs = Slot | list[Slot | None]


@dataclass
class Node:
    """One call of a layer: its input slots (one, or a list for list and named inputs), the
    node's non-tensor call options, the slot its output fills, and the slot(s) of its own
    `mask` argument, which Keras uses in place of the mask its inputs carry."""

    layer: Layer
    inputs: NodeInputs
    options: dict[str, Any]
    out: Slot
    index: int = 0  # which call of the layer this is (Keras's node index)
    loc: Loc = ()  # the layer entry (or its inbound node) in the config
    cast: bool = False  # the inputs are converted to float32 first (see app.engine.arrays.dtypes)
    mask: NodeInputs | None = None


@dataclass
class Graph:
    name: str
    kind: str  # "Sequential" or "Functional"
    input_names: list[str]
    input_shapes: list[Shape]
    layers: list[Layer]  # every layer once, in config order
    nodes: list[Node]
    output_names: list[str]
    output_slots: list[Slot]
    shapes: list[Shape] = field(default_factory=list)  # every slot's shape
    dict_inputs: bool = False
    dict_outputs: bool = False
    input_dtypes: list[torch.dtype] = field(default_factory=list)
    dtypes: list[torch.dtype] = field(default_factory=list)  # every slot's (dtypes.carry)
    # Functional: the layers and Keras op nodes in Keras's order (app.engine.models.numpy_ops).
    operations: list[Layer] = field(default_factory=list)


def parse_shape(value: Any, loc: Loc) -> Shape:
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(loc, f"must be a list like [null, 4], got {value!r}")
    dims: list[int | None] = []
    for i, d in enumerate(value):
        if d is None:
            dims.append(None)
        elif isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 1 << 24:
            dims.append(d)
        else:
            raise ConfigError((*loc, i), f"must be null or a positive integer, got {d!r}")
    return tuple(dims)


def entry_config(entry: Mapping[str, Any], loc: Loc) -> Mapping[str, Any]:
    """A layer entry's `config` (an object; absent means empty)."""
    config = entry.get("config")
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ConfigError((*loc, "config"), "must be an object")
    return config


def input_layer(cfg: Mapping[str, Any], loc: Loc) -> tuple[Shape, torch.dtype]:
    """An InputLayer config's batch shape and dtype."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(loc, "must be an object")
    known_keys(cfg, _INPUT_KEYS, loc)
    dtype = dtypes.input_dtype(cfg.get("dtype"), (*loc, "dtype"))
    for key in ("sparse", "ragged"):
        if cfg.get(key):
            raise ConfigError((*loc, key), "sparse and ragged inputs are not supported")
    for key in ("batch_shape", "batch_input_shape"):
        if cfg.get(key) is not None:
            return parse_shape(cfg[key], (*loc, key)), dtype
    for key in ("shape", "input_shape"):
        if cfg.get(key) is not None:
            return (None, *parse_shape(cfg[key], (*loc, key))), dtype
    raise ConfigError((*loc, "batch_shape"), "an InputLayer needs batch_shape, e.g. [null, 4]")


def auto_name(class_name: str, used: set[str]) -> str:
    base = to_snake_case(class_name)
    if base not in used:
        return base
    i = 1
    while f"{base}_{i}" in used:
        i += 1
    return f"{base}_{i}"


def make_layer(entry: Any, loc: Loc, used: set[str], name: str | None = None) -> Layer:
    """Look up and configure one layer entry (built later, at its first call)."""
    if not isinstance(entry, Mapping):
        raise ConfigError(loc, "a layer is an object with class_name and config")
    known_keys(entry, _ENTRY_KEYS, loc)
    class_name = entry.get("class_name")
    if not isinstance(class_name, str):
        raise ConfigError((*loc, "class_name"), "must be a layer class name")
    if class_name in _REFUSED:
        raise ConfigError((*loc, "class_name"), _REFUSED[str(class_name)])
    layer_cls, cfg, cloc = LAYERS.parse(entry, loc)
    check_dtype(cfg, cloc)
    layer_name = name or get_str(cfg, "name", cloc, None) or auto_name(layer_cls.class_name, used)
    if layer_name in used:
        raise ConfigError((*cloc, "name"), f"layer name {layer_name!r} is used twice")
    used.add(layer_name)
    return layer_cls.from_config(cfg, cloc, name=layer_name)


def read_spec(spec: Any, limits: Limits) -> tuple[str, Mapping[str, Any]]:
    """Check a model spec's outer keys; returns its kind ("Sequential" or "Functional") and
    config."""
    kind_keys = {"Sequential": _SEQ_KEYS, "Functional": _FUNC_KEYS}
    if not isinstance(spec, Mapping):
        raise ConfigError((), "a model is a Keras model JSON object with class_name and config")
    known_keys(spec, MODEL_KEYS, ())
    check_keras_module(spec, ())
    kind = spec.get("class_name")
    if not isinstance(kind, str):
        raise ConfigError(("class_name",), "must be 'Sequential' or 'Functional'")
    if kind == "Model":  # what keras.Model(inputs, outputs) may be saved as
        kind = "Functional"
    if kind not in kind_keys:
        raise ConfigError(("class_name",), f"expected 'Sequential' or 'Functional', got {kind!r}")
    config = spec.get("config")
    if not isinstance(config, Mapping):
        raise ConfigError(("config",), "must be an object with a layers list")
    known_keys(config, kind_keys[str(kind)], ("config",))
    check_dtype(config, ("config",))
    entries = config.get("layers")
    if not isinstance(entries, list):
        raise ConfigError(("config", "layers"), "must be a list of layer objects")
    if len(entries) > limits.layers:
        raise ConfigError(
            ("config", "layers"), f"has {len(entries)} layers; the limit is {limits.layers}"
        )
    return str(kind), config


def _sequential_input(
    entries: Sequence[Any], config: Mapping[str, Any], spec: Mapping[str, Any]
) -> tuple[Shape | None, torch.dtype, Loc]:
    """The batch input shape and dtype: an InputLayer, a first layer's batch_input_shape or
    input_shape (with its `dtype` naming the input's, as tf.keras 2 read it), the Sequential's
    build_input_shape, or its build_config (float32)."""
    first = entries[0] if entries and isinstance(entries[0], Mapping) else None
    if first is not None and first.get("class_name") == "InputLayer":
        loc: Loc = ("config", "layers", 0, "config")
        return *input_layer(entry_config(first, loc[:-1]), loc), loc
    if first is not None:
        loc = ("config", "layers", 0, "config")
        cfg = entry_config(first, loc[:-1])
        dtype = _first_layer_dtype(cfg)
        if cfg.get("batch_input_shape") is not None:
            return parse_shape(cfg["batch_input_shape"], (*loc, "batch_input_shape")), dtype, loc
        if cfg.get("input_shape") is not None:
            return (None, *parse_shape(cfg["input_shape"], (*loc, "input_shape"))), dtype, loc
    float32 = torch.float32
    if config.get("build_input_shape") is not None:
        shape = parse_shape(config["build_input_shape"], ("config", "build_input_shape"))
        return shape, float32, ("config",)
    build = spec.get("build_config")
    if isinstance(build, Mapping) and build.get("input_shape") is not None:
        shape = parse_shape(build["input_shape"], ("build_config", "input_shape"))
        return shape, float32, ("build_config",)
    return None, float32, ("config", "layers")


def _first_layer_dtype(cfg: Mapping[str, Any]) -> torch.dtype:
    """The input dtype a first layer's `dtype` names next to its input shape: one of the input
    dtypes as a string (the layer itself computes in float32, as every layer here); float32
    otherwise (a DTypePolicy object is the layer's own policy, checked with the layer)."""
    dtype = cfg.get("dtype")
    has_shape = cfg.get("batch_input_shape") is not None or cfg.get("input_shape") is not None
    if has_shape and isinstance(dtype, str) and dtype in dtypes.INPUT_DTYPES:
        return dtypes.INPUT_DTYPES[dtype]
    return torch.float32


def sequential_graph(
    spec: Mapping[str, Any], config: Mapping[str, Any], gen: torch.Generator
) -> Graph:
    entries = config["layers"]
    name = get_str(config, "name", ("config",), "sequential")
    input_shape, input_dtype, shape_loc = _sequential_input(entries, config, spec)
    if input_shape is None:
        raise ConfigError(
            shape_loc,
            "the model needs an input shape: start the layers with an InputLayer whose "
            "batch_shape is e.g. [null, 4]",
        )
    input_name = "input_layer"
    if entries and isinstance(entries[0], Mapping) and entries[0].get("class_name") == "InputLayer":
        first_cfg = entry_config(entries[0], ("config", "layers", 0))
        input_name = (
            get_str(first_cfg, "name", ("config", "layers", 0, "config"), None) or input_name
        )
    layers: list[Layer] = []
    nodes: list[Node] = []
    used: set[str] = set()
    shapes: list[Shape] = [input_shape]
    for index, entry in enumerate(entries):
        loc: Loc = ("config", "layers", index)
        if isinstance(entry, Mapping) and entry.get("class_name") == "InputLayer":
            if index != 0:
                raise ConfigError((*loc, "class_name"), "an InputLayer may only come first")
            continue
        if index == 0 and shape_loc == (*loc, "config") and isinstance(entry, Mapping):
            # The first layer gave the input's shape (and, naming one, its dtype: tf.keras 2's
            # reading); the layer itself takes neither and computes in float32.
            given = {"batch_input_shape", "input_shape"}
            given |= {"dtype"} if input_dtype != torch.float32 else set()
            config_0 = {k: v for k, v in entry_config(entry, loc).items() if k not in given}
            entry = {**entry, "config": config_0}
        layer = make_layer(entry, loc, used)
        if layer.multi_input or layer.input_names:
            raise ConfigError(
                (*loc, "class_name"),
                f"{layer.class_name} takes several inputs; use a Functional model",
            )
        shape = layer.build(shapes[-1], gen, (*loc, "config"))
        layer.output_shape = shape
        layers.append(layer)
        nodes.append(Node(layer, len(shapes) - 1, {}, len(shapes), loc=loc))
        shapes.append(shape)
    return Graph(
        name=name,
        kind="Sequential",
        input_names=[input_name],
        input_shapes=[input_shape],
        layers=layers,
        nodes=nodes,
        output_names=[layers[-1].name if layers else input_name],
        output_slots=[len(shapes) - 1],
        shapes=shapes,
        input_dtypes=[input_dtype],
        dtypes=dtypes.carry(nodes, [input_dtype]),
    )
