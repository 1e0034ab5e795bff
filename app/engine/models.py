"""Sequential models built from Keras model JSON (`model.to_json()` or the same written by hand).

Layers are looked up in the closed LAYERS registry; `module`/`registered_name` must name Keras's
own objects. Weights are created from a seeded generator, so a model id plus its seed always gives
the same initial weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from app.engine.errors import ConfigError, DataError, Loc
from app.engine.layers import LAYERS, Layer, Shape
from app.engine.layers.base import check_dtype
from app.engine.params import get_str
from app.engine.registry import check_keras_module, known_keys, to_snake_case

MAX_LAYERS = 1000
MAX_PARAMS = 50_000_000
_MODEL_KEYS = (
    "module",
    "class_name",
    "config",
    "registered_name",
    "build_config",
    "compile_config",
)
_SEQ_KEYS = ("name", "trainable", "dtype", "layers", "build_input_shape")
_ENTRY_KEYS = (
    "module",
    "class_name",
    "config",
    "registered_name",
    "build_config",
    "name",
    "inbound_nodes",
)


def _shape(value: Any, loc: Loc) -> Shape:
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


def _input_shape(
    entries: Sequence[Any], config: Mapping[str, Any], spec: Mapping[str, Any]
) -> tuple[Shape | None, Loc]:
    """Find the model's batch input shape: an InputLayer, a first layer's batch_input_shape or
    input_shape, the Sequential's build_input_shape, or its build_config."""
    if entries and isinstance(entries[0], Mapping) and entries[0].get("class_name") == "InputLayer":
        cfg = entries[0].get("config") or {}
        loc: Loc = ("config", "layers", 0, "config")
        check_dtype(cfg, loc)
        known_keys(
            cfg,
            (
                "batch_shape",
                "batch_input_shape",
                "shape",
                "input_shape",
                "dtype",
                "sparse",
                "ragged",
                "name",
                "optional",
            ),
            loc,
        )
        for key in ("batch_shape", "batch_input_shape"):
            if cfg.get(key) is not None:
                return _shape(cfg[key], (*loc, key)), (*loc, key)
        for key in ("shape", "input_shape"):
            if cfg.get(key) is not None:
                return (None, *_shape(cfg[key], (*loc, key))), (*loc, key)
        raise ConfigError((*loc, "batch_shape"), "an InputLayer needs batch_shape, e.g. [null, 4]")
    if entries and isinstance(entries[0], Mapping):
        cfg = entries[0].get("config") or {}
        loc = ("config", "layers", 0, "config")
        if cfg.get("batch_input_shape") is not None:
            return _shape(cfg["batch_input_shape"], (*loc, "batch_input_shape")), loc
        if cfg.get("input_shape") is not None:
            return (None, *_shape(cfg["input_shape"], (*loc, "input_shape"))), loc
    if config.get("build_input_shape") is not None:
        return _shape(config["build_input_shape"], ("config", "build_input_shape")), ("config",)
    build = spec.get("build_config")
    if isinstance(build, Mapping) and build.get("input_shape") is not None:
        return _shape(build["input_shape"], ("build_config", "input_shape")), ("build_config",)
    return None, ("config", "layers")


class Sequential(nn.Module):
    """A stack of layers applied in order."""

    def __init__(self, name: str, input_shape: Shape, layers: list[Layer], output_shape: Shape):
        super().__init__()
        self.name = name
        self.input_shape = input_shape
        self.output_shape = output_shape
        self.layers = nn.ModuleList(layers)

    @classmethod
    def from_config(cls, spec: Any, *, seed: int) -> Sequential:
        if not isinstance(spec, Mapping):
            raise ConfigError((), "a model is a Keras model JSON object with class_name and config")
        known_keys(spec, _MODEL_KEYS, ())
        check_keras_module(spec, ())
        class_name = spec.get("class_name")
        if class_name != "Sequential":
            raise ConfigError(
                ("class_name",), f"only Sequential models are supported yet, got {class_name!r}"
            )
        config = spec.get("config")
        if not isinstance(config, Mapping):
            raise ConfigError(("config",), "must be an object with a layers list")
        known_keys(config, _SEQ_KEYS, ("config",))
        check_dtype(config, ("config",))
        name = get_str(config, "name", ("config",), "sequential")
        entries = config.get("layers")
        if not isinstance(entries, list):
            raise ConfigError(("config", "layers"), "must be a list of layer objects")
        if len(entries) > MAX_LAYERS:
            raise ConfigError(
                ("config", "layers"), f"has {len(entries)} layers; the limit is {MAX_LAYERS}"
            )
        input_shape, shape_loc = _input_shape(entries, config, spec)
        if input_shape is None:
            raise ConfigError(
                shape_loc,
                "the model needs an input shape: start the layers with an InputLayer whose "
                "batch_shape is e.g. [null, 4]",
            )
        generator = torch.Generator().manual_seed(seed)
        layers: list[Layer] = []
        used: set[str] = set()
        shape = input_shape
        for index, entry in enumerate(entries):
            loc: Loc = ("config", "layers", index)
            if not isinstance(entry, Mapping):
                raise ConfigError(loc, "a layer is an object with class_name and config")
            if entry.get("class_name") == "InputLayer":
                if index != 0:
                    raise ConfigError((*loc, "class_name"), "an InputLayer may only come first")
                continue
            known_keys(entry, _ENTRY_KEYS, loc)
            layer_cls, cfg, cloc = LAYERS.parse(entry, loc)
            check_dtype(cfg, cloc)
            layer_name = get_str(cfg, "name", cloc, None) or _auto_name(layer_cls.class_name, used)
            if layer_name in used:
                raise ConfigError((*cloc, "name"), f"layer name {layer_name!r} is used twice")
            used.add(layer_name)
            layer = layer_cls.from_config(cfg, cloc, name=layer_name)
            shape = layer.build(shape, generator, cloc)
            layer.output_shape = shape
            layers.append(layer)
        model = cls(name, input_shape, layers, shape)
        total = sum(sum(layer.count_params()) for layer in layers)
        if total > MAX_PARAMS:
            raise ConfigError(
                ("config", "layers"), f"the model has {total} parameters; the limit is {MAX_PARAMS}"
            )
        return model

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return self.forward_with_mask(x, training)[0]

    def forward_with_mask(
        self, x: torch.Tensor, training: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output and its Keras mask (from Masking or Embedding(mask_zero), carried through
        the layers that support masking), which the loss and metrics apply."""
        mask: torch.Tensor | None = None
        for layer in self.layers:
            assert isinstance(layer, Layer)
            x, mask = layer.call_masked(x, mask, training)
        return x, mask

    def added_losses(self) -> torch.Tensor | None:
        """The sum of every layer's added losses (regularization), or None when there are
        none."""
        terms = [t for layer in self._layer_list() for t in layer.added_losses()]
        return torch.stack(terms).sum() if terms else None

    def apply_constraints(self) -> None:
        for layer in self._layer_list():
            layer.apply_constraints()

    def _layer_list(self) -> list[Layer]:
        return [layer for layer in self.layers if isinstance(layer, Layer)]

    def check_input(self, x: np.ndarray, loc: Loc) -> None:
        """Raw inputs the first layer cannot take (ids out of range) are a DataError now,
        not in the middle of a fit."""
        first = self.layers[0] if len(self.layers) else None
        if isinstance(first, Layer):
            first.check_input(x, loc)

    def set_generator(self, generator: torch.Generator | None) -> None:
        """Random layers (Dropout) draw from this generator, so a seeded fit is reproducible."""
        for layer in self.layers:
            if hasattr(layer, "generator"):
                setattr(layer, "generator", generator)  # noqa: B010 - Module.__setattr__ typing

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # -- weights -------------------------------------------------------------------------------
    def weight_tensors(self) -> dict[str, torch.Tensor]:
        """`layer_name/weight_name` -> tensor, in Keras's `get_weights()` order."""
        return {
            f"{layer.name}/{name}": tensor
            for layer in self.layers
            if isinstance(layer, Layer)
            for name, tensor in layer.keras_weights()
        }

    def get_weights(self) -> list[np.ndarray]:
        return [t.detach().cpu().numpy().copy() for t in self.weight_tensors().values()]

    def set_weights(self, weights: Sequence[Any], loc: Loc = ("weights",)) -> None:
        """Replace all weights (Keras order); nothing changes unless every shape fits."""
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
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise DataError((*loc, i), f"{name}: values must be finite")
            arrays.append(torch.as_tensor(arr, dtype=target.dtype))
        with torch.no_grad():
            for (_, target), arr_t in zip(targets, arrays, strict=True):
                target.copy_(arr_t)

    def load_weight_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        own = self.weight_tensors()
        missing = set(own) - set(tensors)
        if missing:
            raise DataError(("weights",), f"checkpoint lacks {sorted(missing)}")
        self.set_weights([tensors[name].cpu().numpy() for name in own])

    # -- description ---------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """A Keras-style summary: each layer's output shape and parameter counts, and totals."""
        rows = []
        trainable = non_trainable = 0
        for layer in self.layers:
            assert isinstance(layer, Layer)
            t, nt = layer.count_params()
            trainable, non_trainable = trainable + t, non_trainable + nt
            rows.append({
                "name": layer.name,
                "class_name": layer.class_name,
                "output_shape": list(layer.output_shape),
                "params": t + nt,
                "trainable_params": t,
                "non_trainable_params": nt,
            })  # fmt: skip
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "layers": rows,
            "total_params": trainable + non_trainable,
            "trainable_params": trainable,
            "non_trainable_params": non_trainable,
        }

    def get_config(self) -> dict[str, Any]:
        """The canonical Keras JSON of this model (what Keras's `to_json()` would write)."""
        layers: list[dict[str, Any]] = [{
            "module": "keras.layers",
            "class_name": "InputLayer",
            "config": {
                "batch_shape": list(self.input_shape), "dtype": "float32", "name": "input_layer"
            },
            "registered_name": None,
        }]  # fmt: skip
        for layer in self.layers:
            assert isinstance(layer, Layer)
            layers.append({
                "module": "keras.layers",
                "class_name": layer.class_name,
                "config": layer.get_config(),
                "registered_name": None,
            })  # fmt: skip
        return {
            "module": "keras",
            "class_name": "Sequential",
            "config": {"name": self.name, "trainable": True, "dtype": "float32", "layers": layers},
            "registered_name": None,
            "build_config": {"input_shape": list(self.input_shape)},
        }


def _auto_name(class_name: str, used: set[str]) -> str:
    base = to_snake_case(class_name)
    if base not in used:
        return base
    i = 1
    while f"{base}_{i}" in used:
        i += 1
    return f"{base}_{i}"
