"""A Sequential or Functional model used as a layer of another model (Keras's nested models:
a base model inside a bigger one). The inner model is built when the outer graph reaches it, from
the outer model's seeded generator; its weights, masks, added losses and constraints are the
outer model's too, listed in Keras's order and at Keras's `.keras` paths (`layers/<group>/...`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import ConfigError, EngineError, Loc
from app.engine.layers.base import LAYERS, Layer, Shape
from app.engine.models.from_json import Limits, read_spec, sequential_graph
from app.engine.models.functional import functional_graph
from app.engine.models.model import Model


def _fits(given: Shape, wanted: Shape) -> bool:
    """Whether an input of shape `given` fits a model input of shape `wanted` (the batch and
    unknown sizes aside)."""
    pairs = zip(given[1:], wanted[1:], strict=True)
    return len(given) == len(wanted) and all(a is None or b is None or a == b for a, b in pairs)


class _Nested(Layer):
    supports_masking = True
    uses_mask = True
    keras_module = "keras"
    # The inner model converts what it gets to its float32 inputs, as Keras's does.
    integer_input = "cast"

    def __init__(self, *, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name=name, trainable=bool(config.get("trainable", True)))
        self.spec_config = dict(config)
        self.model: Model | None = None
        self._mask: torch.Tensor | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        return cls(name=name, config=config)

    def _spec(self, input_shape: Shape) -> dict[str, Any]:
        return {"class_name": self.class_name, "config": self.spec_config}

    def build(self, input_shape: Any, generator: torch.Generator, loc: Loc) -> Shape:
        spec = self._spec(input_shape)
        try:
            _, config = read_spec(spec, Limits())
            graph = (
                sequential_graph(spec, config, generator)
                if self.class_name == "Sequential"
                else functional_graph(config, generator)
            )
        except EngineError as exc:
            raise exc.prefixed(*loc[:-1]) from None
        model = Model(graph)
        if any(d != torch.float32 for d in model.input_dtypes):
            raise ConfigError(loc, "a nested model's inputs must be float32 for now")
        given = input_shape if isinstance(input_shape, list) else [input_shape]
        if len(given) != len(model.input_shapes) or not all(
            _fits(g, w) for g, w in zip(given, model.input_shapes, strict=True)
        ):
            raise ConfigError(loc, f"the nested model takes {model.input_shapes}, got {given}")
        if len(model.output_shapes) != 1:
            raise ConfigError(loc, "a nested model must have one output")
        self.model = model
        return model.output_shape

    def _inner(self) -> Model:
        assert self.model is not None, "built with the outer model"
        return self.model

    def layer_config(self) -> dict[str, Any]:
        inner = self._inner().get_config()["config"]
        return {k: v for k, v in inner.items() if k not in ("name", "trainable", "dtype")}

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        # Keras's nested model attaches the mask it is called with to its inputs, so its
        # layers read it as they would an outer layer's.
        out, self._mask = self._inner().forward_with_mask(x, training, mask)
        return out

    def compute_mask(self, x: Any, mask: Any) -> torch.Tensor | None:
        return self._mask

    def keras_weights(self) -> list[tuple[str, torch.Tensor]]:
        return list(self._inner().weight_tensors().items())

    def h5_paths(self) -> list[str]:
        return self._inner().h5_paths()

    def count_params(self) -> tuple[int, int]:
        counts = [layer.count_params() for layer in self._inner().layer_list()]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    def check_input(self, x: Any, loc: Loc) -> None:
        self._inner().check_input([x], loc)

    def added_losses(self) -> list[torch.Tensor]:
        return self._inner().added_losses()

    def apply_constraints(self) -> None:
        self._inner().apply_constraints()


@LAYERS.register("Sequential")
class NestedSequential(_Nested):
    class_name = "Sequential"

    def _spec(self, input_shape: Shape) -> dict[str, Any]:
        layers = self.spec_config.get("layers")
        first = layers[0] if isinstance(layers, list) and layers else None
        has_input = isinstance(first, Mapping) and first.get("class_name") == "InputLayer"
        config = dict(self.spec_config)
        if not has_input and config.get("build_input_shape") is None:
            config["build_input_shape"] = list(input_shape)  # built on its first call, as Keras
        return {"class_name": "Sequential", "config": config}


@LAYERS.register("Functional", "Model")
class NestedFunctional(_Nested):
    class_name = "Functional"
    keras_module = "keras.src.models.functional"
    multi_input = False
