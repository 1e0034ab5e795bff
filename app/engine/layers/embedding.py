"""Keras's Embedding: a `(input_dim, output_dim)` table looked up by integer ids.

Ids come in the input's dtype: integers (an int32, int64, uint8 or bool input) are taken as they
are, floats are cast to integers as Keras does (truncating toward zero). An id outside
`[0, input_dim)` is a DataError rather than a crashed lookup; Keras's torch backend would wrap
negative ids around (`ops.take`), which is refused here as well. `input_dim` is capped at 2**24
so every valid id is exact in float32 too. With `mask_zero`, id 0 is padding: the
output carries the mask `ids != 0` for the layers after it (recurrent layers, losses, metrics).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from app.engine.config.errors import DataError, Loc
from app.engine.config.readers import get_bool, get_int
from app.engine.config.registry import known_keys
from app.engine.layers.base import BASE_KEYS, LAYERS, Layer, Shape, option_weights, require_null
from app.engine.weights import initializers

MAX_INPUT_DIM = 1 << 24
MAX_OUTPUT_DIM = 1 << 20


@LAYERS.register("Embedding")
class Embedding(Layer):
    class_name = "Embedding"
    integer_input = "as_is"
    config_keys = (
        "input_dim", "output_dim", "embeddings_initializer", "embeddings_regularizer",
        "activity_regularizer", "embeddings_constraint", "mask_zero", "input_length",
        "lora_rank", "lora_alpha", "quantization_config",
    )  # fmt: skip
    weight_options = option_weights("embeddings")
    embeddings: torch.Tensor

    def __init__(
        self,
        *,
        name: str,
        input_dim: int,
        output_dim: int,
        embeddings_initializer: Any = "uniform",
        mask_zero: bool = False,
        trainable: bool = True,
        loc: Loc = (),
    ) -> None:
        super().__init__(name=name, trainable=trainable)
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.mask_zero = mask_zero
        self.init_config, self.init = initializers.get(
            embeddings_initializer, (*loc, "embeddings_initializer")
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        require_null(config, ("lora_rank", "quantization_config"), loc)
        get_int(config, "input_length", loc, None, min_value=1)  # deprecated in Keras; unused
        return cls(
            name=name,
            input_dim=get_int(config, "input_dim", loc, min_value=1, max_value=MAX_INPUT_DIM),
            output_dim=get_int(config, "output_dim", loc, min_value=1, max_value=MAX_OUTPUT_DIM),
            embeddings_initializer=config.get("embeddings_initializer") or "uniform",
            mask_zero=get_bool(config, "mask_zero", loc, False),
            trainable=get_bool(config, "trainable", loc, True),
            loc=loc,
        )

    def layer_config(self) -> dict[str, Any]:
        return {
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": self.init_config,
            "embeddings_regularizer": None,
            "activity_regularizer": None,
            "embeddings_constraint": None,
            "mask_zero": self.mask_zero,
        }

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        shape = (self.input_dim, self.output_dim)
        self.add_weight("embeddings", self.init(shape, generator))
        return (*input_shape, self.output_dim)

    def compute_mask(self, x: Any, mask: Any) -> torch.Tensor | None:
        # Keras compares the raw ids with 0, before the cast to integers.
        return x != 0 if self.mask_zero else None

    def check_input(self, x: np.ndarray, loc: Loc) -> None:
        # Integers are compared as int64: a uint8 array would wrap -1 around.
        ids = x.astype(np.int64) if x.dtype.kind in "iub" else x
        if np.any(ids <= -1) or np.any(ids >= self.input_dim):
            raise DataError(loc, f"{self.name}: ids must be integers in [0, {self.input_dim})")

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        ids = x.to(torch.int64)
        # Every entry point checks ids with check_input first; on the CPU, checking again here
        # costs nothing, while on an accelerator it would read the device on every batch.
        # (Floats are checked before truncation: -0.5 is id 0, as Keras casts it.)
        if x.device.type == "cpu":
            raw = x if x.is_floating_point() else ids
            if bool(torch.logical_or(raw <= -1, raw >= self.input_dim).any()):
                raise DataError(("x",), f"{self.name}: ids must be integers in [0, "
                                f"{self.input_dim})")  # fmt: skip
        return F.embedding(ids, self.embeddings)
