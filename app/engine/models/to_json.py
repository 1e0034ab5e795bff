"""A built model written back as Keras 3 model JSON (what `model.to_json()` would write), so
Keras's `model_from_json` and `.keras` loading accept it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from app.engine.arrays.dtypes import dtype_name
from app.engine.layers.base import Layer, Shape
from app.engine.models.numpy_ops import Op

if TYPE_CHECKING:
    from app.engine.models.model import Model


def _input_entry(name: str, shape: Shape, dtype: torch.dtype, functional: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": list(shape), "dtype": dtype_name(dtype), "name": name},
        "registered_name": None,
    }
    if functional:
        entry.update(name=name, inbound_nodes=[])
    return entry


def _layer_entry(layer: Layer) -> dict[str, Any]:
    module = getattr(layer, "keras_module", "keras.layers")  # nested models and ops elsewhere
    registered = layer.class_name if isinstance(layer, Op) else None  # as Keras writes ops
    return {
        "module": module,
        "class_name": layer.class_name,
        "config": layer.get_config(),
        "registered_name": "Functional" if layer.class_name == "Functional" else registered,
    }


def sequential_json(model: Model) -> dict[str, Any]:
    layers = [_input_entry(model.input_names[0], model.input_shape, model.input_dtypes[0], False)]
    layers += [_layer_entry(layer) for layer in model.layer_list()]
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": model.name, "trainable": True, "dtype": "float32", "layers": layers},
        "registered_name": None,
        "build_config": {"input_shape": list(model.input_shape)},
    }


def functional_json(model: Model) -> dict[str, Any]:
    graph = model.graph
    keys: list[list[Any]] = [[name, 0, 0] for name in graph.input_names]
    for node in graph.nodes:
        while len(keys) <= node.out:
            keys.append([])
        keys[node.out] = [node.layer.name, node.index, 0]

    def tensor(slot: int) -> dict[str, Any]:
        return {
            "class_name": "__keras_tensor__",
            "config": {
                "shape": list(graph.shapes[slot]),
                "dtype": dtype_name(graph.dtypes[slot]),
                "keras_history": keys[slot],
            },
        }

    calls: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for node in graph.nodes:
        kwargs: dict[str, Any] = dict(node.options)
        if isinstance(node.inputs, int):
            args: list[Any] = [tensor(node.inputs)]
        elif node.layer.input_names:
            args = []  # the leading run of given tensors positionally, the rest by name
            for i, (name, slot) in enumerate(zip(node.layer.input_names, node.inputs, strict=True)):
                if slot is None:
                    continue
                if i == len(args):
                    args.append(tensor(slot))
                else:
                    kwargs[name] = tensor(slot)
        else:
            args = [[tensor(s) for s in node.inputs if s is not None]]
        if isinstance(node.layer, Op):  # NotEqual's number follows its tensor
            args += [kwargs.pop(name) for name in node.layer.constants]
        if isinstance(node.mask, int):
            kwargs["mask"] = tensor(node.mask)
        elif node.mask is not None:
            kwargs["mask"] = [None if s is None else tensor(s) for s in node.mask]
        calls.setdefault(node.layer.name, []).append((node.index, {"args": args, "kwargs": kwargs}))
    layers = [
        _input_entry(n, s, d, True)
        for n, s, d in zip(graph.input_names, graph.input_shapes, graph.input_dtypes, strict=True)
    ]
    for layer in graph.operations:  # layers and Keras op nodes, in Keras's order
        entry = _layer_entry(layer)
        entry.update(name=layer.name, inbound_nodes=[c for _, c in sorted(calls[layer.name])])
        layers.append(entry)

    def endpoints(names: list[str], slots: list[int], as_dict: bool) -> Any:
        triples = [keys[s] for s in slots]
        if as_dict:
            return dict(zip(names, triples, strict=True))
        return triples[0] if len(triples) == 1 else triples

    return {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": {
            "name": model.name,
            "trainable": True,
            "layers": layers,
            "input_layers": endpoints(
                graph.input_names, list(range(len(graph.input_names))), graph.dict_inputs
            ),
            "output_layers": endpoints(graph.output_names, graph.output_slots, graph.dict_outputs),
        },
        "registered_name": "Functional",
        "build_config": {"input_shape": None},
    }
