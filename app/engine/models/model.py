"""Models built from Keras model JSON: Sequential and Functional, one runtime for both.

A model is a graph (app.engine.models.from_json / functional): input slots, then layer calls in an
order where every input comes first. Weights are created from a seeded generator, so a model id
plus its seed always gives the same initial weights, and they are listed in Keras's
`get_weights()` order (layers in config order, each layer's weights in creation order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from app.engine.arrays.checks import for_chunks
from app.engine.arrays.dtypes import dtype_name, to_float32
from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.config.registry import to_snake_case
from app.engine.layers.base import Layer, Shape
from app.engine.models.from_json import Graph, Limits, Node, read_spec, sequential_graph
from app.engine.models.functional import functional_graph
from app.engine.models.to_json import functional_json, sequential_json

Outputs = torch.Tensor | list[torch.Tensor]


class Model(nn.Module):
    """A built Keras model: inputs, layer calls, outputs."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph
        self.name = graph.name
        self.kind = graph.kind
        self.input_names = list(graph.input_names)
        self.input_shapes = list(graph.input_shapes)
        # Each input's dtype (the InputLayer's): batches are converted to it on the device
        # (app.engine.arrays.checks.cast_input) before the model sees them.
        self.input_dtypes = list(graph.input_dtypes)
        self.output_names = list(graph.output_names)
        self.output_shapes = [graph.shapes[s] for s in graph.output_slots]
        self.layers = nn.ModuleList(graph.layers)
        self._nodes: list[Node] = graph.nodes
        self._n_slots = len(graph.shapes)
        self._out = list(graph.output_slots)

    @classmethod
    def from_config(cls, spec: Any, *, seed: int, limits: Limits | None = None) -> Model:
        """Build the model. A dry run on torch's meta device checks the limits first, so a
        model too large is refused before any weight is allocated."""
        limits = limits or Limits()
        cls.dry_run(spec, limits=limits)
        return cls._build(spec, seed, limits)

    @classmethod
    def dry_run(cls, spec: Any, *, limits: Limits | None = None) -> Model:
        """Shapes, parameter counts and limits without allocating weights: the layers are built
        on the meta device (the summary is right; the model cannot run on data)."""
        limits = limits or Limits()
        with torch.device("meta"):
            model = cls._build(spec, 0, limits)
        model.check_limits(limits)
        return model

    @classmethod
    def _build(cls, spec: Any, seed: int, limits: Limits) -> Model:
        kind, config = read_spec(spec, limits)
        generator = torch.Generator().manual_seed(seed)
        if kind == "Sequential":
            graph = sequential_graph(spec, config, generator)
        else:
            graph = functional_graph(config, generator)
        return cls(graph)

    def check_limits(self, limits: Limits) -> None:
        """ConfigErrors stating the number and the limit it passes."""
        where = ("config", "layers")
        total = sum(sum(layer.count_params()) for layer in self.layer_list())
        if total > limits.params:
            raise ConfigError(
                where, f"the model has {total} parameters; the limit is {limits.params}"
            )
        layers, depth = _nesting(self.layer_list())
        if layers > limits.layers:
            raise ConfigError(
                where,
                f"the model has {layers} layers, nested ones included; the "
                f"limit is {limits.layers}",
            )
        if depth > limits.depth:
            raise ConfigError(where, f"layers are nested {depth} deep; the limit is {limits.depth}")
        for shape in self.all_shapes():
            size = math.prod(d for d in shape[1:] if d is not None)
            if size > limits.tensor_elements:
                raise ConfigError(
                    where,
                    f"a tensor of shape {list(shape)} has {size} elements "
                    f"per sample; the limit is {limits.tensor_elements}",
                )

    # -- shapes --------------------------------------------------------------------------------
    @property
    def single_input(self) -> bool:
        return len(self.input_names) == 1

    @property
    def single_output(self) -> bool:
        return len(self.output_names) == 1 and not self.graph.dict_outputs

    @property
    def input_shape(self) -> Shape:
        """The one input's batch shape (multi-input models have input_shapes)."""
        return self.input_shapes[0]

    @property
    def output_shape(self) -> Shape:
        return self.output_shapes[0]

    # -- running -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor | Sequence[torch.Tensor], training: bool = False) -> Outputs:
        return self.forward_with_mask(x, training)[0]

    def forward_with_mask(
        self,
        x: torch.Tensor | Sequence[torch.Tensor],
        training: bool = False,
        input_mask: Any = None,
    ) -> tuple[Any, Any]:
        """The outputs and their Keras masks (from Masking or Embedding(mask_zero), carried
        through the layers that support masking), which the loss and metrics apply. One
        output gives a tensor and a mask; several give lists in output order. `input_mask` is the
        inputs' own (a nested model's caller passes its mask on, as Keras's does)."""
        values: list[Any] = [None] * self._n_slots
        masks: list[Any] = [None] * self._n_slots
        xs = [x] if isinstance(x, torch.Tensor) else list(x)
        values[: len(xs)] = xs
        if input_mask is not None:
            given = [input_mask] if isinstance(input_mask, torch.Tensor) else list(input_mask)
            masks[: len(given)] = given
        for node in self._nodes:
            if isinstance(node.inputs, int):
                inp, mask = values[node.inputs], masks[node.inputs]
            else:
                inp = [None if s is None else values[s] for s in node.inputs]
                mask = [None if s is None else masks[s] for s in node.inputs]
                if all(m is None for m in mask):
                    mask = None
            if node.mask is not None:  # the call's own `mask` argument, in place of the above
                mask = (
                    values[node.mask]
                    if isinstance(node.mask, int)
                    else [None if s is None else values[s] for s in node.mask]
                )
            if node.cast:  # an integer or half-float input the layer reads as float32
                inp = to_float32(inp)
            values[node.out], masks[node.out] = node.layer.call_masked(
                inp, mask, training, node.options
            )
        if len(self._out) == 1:
            return values[self._out[0]], masks[self._out[0]]
        return [values[s] for s in self._out], [masks[s] for s in self._out]

    def check_input(self, xs: Sequence[np.ndarray], loc: Loc) -> None:
        """Raw inputs a layer reading an input cannot take (ids out of range) are a DataError
        now, not in the middle of a fit."""
        for node in self._nodes:
            if isinstance(node.inputs, int) and node.inputs < len(xs):
                iloc = loc if self.single_input else (*loc, self.input_names[node.inputs])
                x = xs[node.inputs]
                if isinstance(x, np.memmap):  # a stored dataset's rows: a slab at a time
                    for_chunks(x, iloc, node.layer.check_input)
                else:
                    node.layer.check_input(x, iloc)

    def set_generator(self, generator: torch.Generator | None) -> None:
        """Random layers (Dropout) draw from this generator, so a seeded fit is reproducible."""
        for layer in self.layer_list():
            for module in layer.modules():
                if hasattr(module, "generator"):
                    setattr(module, "generator", generator)  # noqa: B010 - Module typing

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def added_losses(self) -> list[torch.Tensor]:
        """Every layer's added losses (regularization), in layer order."""
        return [t for layer in self.layer_list() for t in layer.added_losses()]

    def apply_constraints(self) -> None:
        for layer in self.layer_list():
            layer.apply_constraints()

    def all_shapes(self) -> list[Shape]:
        """Every tensor shape of the graph, those inside nested models included."""
        shapes = list(self.graph.shapes)
        for layer in self.layer_list():
            inner = getattr(layer, "model", None)
            if isinstance(inner, Model):
                shapes += inner.all_shapes()
        return shapes

    def layer_list(self) -> list[Layer]:
        return [layer for layer in self.layers if isinstance(layer, Layer)]

    # -- weights -------------------------------------------------------------------------------
    def weight_tensors(self) -> dict[str, torch.Tensor]:
        """`layer_name/weight_name` -> tensor, in Keras's `get_weights()` order."""
        return {
            f"{layer.name}/{name}": tensor
            for layer in self.layer_list()
            for name, tensor in layer.keras_weights()
        }

    def h5_paths(self) -> list[str]:
        """Each weight's dataset path in a `.keras` file's model.weights.h5, in weight order.

        Keras's saver names a model's layer groups by class, not by layer name: `dense`,
        `dense_1`, ... counted in layer order (inputs hold no weights). Inside a group each
        layer lays out its own variables."""
        used: dict[str, int] = {}
        paths: list[str] = []
        for layer in self.layer_list():
            group = to_snake_case(layer.class_name)
            if group in used:
                used[group] += 1
                group = f"{group}_{used[group]}"
            else:
                used[group] = 0
            paths += [f"layers/{group}/{p}" for p in layer.h5_paths()]
        return paths

    def get_weights(self) -> list[np.ndarray]:
        return [t.detach().cpu().numpy().copy() for t in self.weight_tensors().values()]

    def set_weights(
        self, weights: Sequence[Any], loc: Loc = ("weights",), *, finite: bool = True
    ) -> None:
        """Replace all weights (Keras order); nothing changes unless every shape fits (and,
        with `finite`, every value is finite)."""
        targets = list(self.weight_tensors().items())
        if len(weights) != len(targets):
            raise DataError(loc, f"expected {len(targets)} arrays, got {len(weights)}")
        arrays = []
        for i, ((name, target), value) in enumerate(zip(targets, weights, strict=True)):
            arr = np.asarray(value)
            if tuple(arr.shape) != tuple(target.shape):
                raise DataError(
                    (*loc, i),
                    f"{name}: expected shape {tuple(target.shape)}, got {tuple(arr.shape)}",
                )
            if finite and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise DataError((*loc, i), f"{name}: values must be finite")
            arrays.append(torch.as_tensor(arr, dtype=target.dtype))
        with torch.no_grad():
            for (_, target), arr_t in zip(targets, arrays, strict=True):
                target.copy_(arr_t)

    def load_weight_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """The weights of a checkpoint this engine wrote. A diverged fit's are NaN, and Keras
        carries them on as they are: unlike uploads, they are not refused."""
        own = self.weight_tensors()
        missing = set(own) - set(tensors)
        if missing:
            raise DataError(("weights",), f"checkpoint lacks {sorted(missing)}")
        self.set_weights([tensors[name].cpu().numpy() for name in own], finite=False)

    # -- description ---------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """A Keras-style summary: each layer's output shape and parameter counts, and totals."""
        rows = []
        trainable = non_trainable = 0
        for layer in self.layer_list():
            t, nt = layer.count_params()
            trainable, non_trainable = trainable + t, non_trainable + nt
            rows.append(
                {
                    "name": layer.name,
                    "class_name": layer.class_name,
                    "output_shape": list(layer.output_shape),
                    "params": t + nt,
                    "trainable_params": t,
                    "non_trainable_params": nt,
                }
            )
        single = len(self.input_shapes) == 1 and len(self.output_shapes) == 1
        return {
            "name": self.name,
            "kind": self.kind,
            "inputs": [
                {"name": n, "shape": list(s), "dtype": dtype_name(d)}
                for n, s, d in zip(
                    self.input_names, self.input_shapes, self.input_dtypes, strict=True
                )
            ],
            "outputs": [
                {"name": n, "shape": list(s)}
                for n, s in zip(self.output_names, self.output_shapes, strict=True)
            ],
            "input_shape": list(self.input_shape) if single else None,
            "output_shape": list(self.output_shape) if single else None,
            "layers": rows,
            "total_params": trainable + non_trainable,
            "trainable_params": trainable,
            "non_trainable_params": non_trainable,
        }

    def get_config(self) -> dict[str, Any]:
        """The canonical Keras JSON of this model (what Keras's `to_json()` would write)."""

        return sequential_json(self) if self.kind == "Sequential" else functional_json(self)


def _held_layers(module: nn.Module) -> list[Layer]:
    """The layers a layer holds directly (through lists and inner models, not deeper layers)."""
    held: list[Layer] = []
    for child in module.children():
        held += [child] if isinstance(child, Layer) else _held_layers(child)
    return held


def _nesting(layers: Sequence[nn.Module], level: int = 1) -> tuple[int, int]:
    """(how many layers, how deep) counting layers held inside layers (wrappers)."""
    count, depth = 0, level - 1 if not layers else level
    for layer in layers:
        n, d = _nesting(_held_layers(layer), level + 1)
        count, depth = count + 1 + n, max(depth, d)
    return count, depth
