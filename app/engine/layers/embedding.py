"""Keras's Embedding: a `(input_dim, output_dim)` table looked up by integer ids.

Ids come in the input's dtype: integers (an int32, int64, uint8 or bool input) are taken as they
are, floats are cast to integers as Keras does (truncating toward zero). An id outside
`[0, input_dim)` is a DataError rather than a crashed lookup; Keras's torch backend would wrap
negative ids around (`ops.take`), which is refused here as well. `input_dim` is capped at 2**24
so every valid id is exact in float32 too. With `mask_zero`, id 0 is padding: the
output carries the mask `ids != 0` for the layers after it (recurrent layers, losses, metrics).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from app.engine.config.errors import DataError, Loc
from app.engine.layers import keys
from app.engine.layers.base import LAYERS, Layer, Shape

MAX_INPUT_DIM = 1 << 24
MAX_OUTPUT_DIM = 1 << 20


@LAYERS.add()
class Embedding(Layer):
    integer_input = "as_is"
    input_dim = keys.integer(min_value=1, max_value=MAX_INPUT_DIM)
    output_dim = keys.integer(min_value=1, max_value=MAX_OUTPUT_DIM)
    embeddings_initializer = keys.initializer("uniform", null=True, empty=True)
    embeddings_regularizer = keys.regularizer("embeddings")
    activity_regularizer = keys.activity_regularizer()
    embeddings_constraint = keys.constraint("embeddings")
    mask_zero = keys.boolean(False)
    input_length = keys.integer_or_none(min_value=1, saved=False)  # deprecated in Keras; unused
    lora_rank = keys.must_be_null()
    lora_alpha = keys.anything(saved=False)
    quantization_config = keys.must_be_null()
    embeddings: torch.Tensor

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        shape = (self.input_dim, self.output_dim)
        init = keys.draw(self, "embeddings_initializer", loc)
        self.add_weight("embeddings", init(shape, generator))
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
                raise DataError(
                    ("x",), f"{self.name}: ids must be integers in [0, {self.input_dim})"
                )
        return F.embedding(ids, self.embeddings)
