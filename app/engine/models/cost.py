"""What running a model costs per sample, estimated from its built graph without running it.

The unit is one tensor element (a float32 is 4 bytes). A sample costs every tensor of the graph
(its inputs, each layer call's output, those of nested models), plus what layers hold inside a
call that is larger than their output: a recurrent layer's gate terms and per-step states, an
attention layer's score matrices and projections. It is an estimate of what a forward pass
allocates, deliberately on the high side (inference frees a layer's input once the next has run;
views such as Reshape are counted as copies), cheap enough to compute on every request: a walk
over the nodes, no tensor touched. Convolutions are counted by their outputs only: the CPU and
CUDA kernels torch picks for float32 do not unfold their inputs (im2col) into memory.

Dimensions a model leaves open (`null` timesteps) count as 1 here; `SampleCost.scaled` scales
the estimate to the sizes a request actually sends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from app.engine.layers.attention import AdditiveAttention, Attention
from app.engine.layers.base import Layer, Shape
from app.engine.layers.multi_head_attention import MultiHeadAttention
from app.engine.layers.recurrent_base import Recurrent
from app.engine.layers.wrappers import Bidirectional, TimeDistributed
from app.engine.models.from_json import Node
from app.engine.models.model import Model


@dataclass(frozen=True)
class SampleCost:
    """Elements of one sample: `linear` grows in proportion to the open dimensions, `quadratic`
    (attention scores, a length times a length) with their square; `outputs` are the model's
    outputs alone (also part of `linear`). `inputs` are each input's elements with open
    dimensions counted as 1, and whether it has any."""

    linear: int
    quadratic: int
    outputs: int
    inputs: tuple[tuple[int, bool], ...]

    def elements(self, scale: float = 1.0) -> int:
        """The whole estimate for inputs `scale` times as large as the model's fixed sizes."""
        return math.ceil(self.linear * scale + self.quadratic * scale * scale)

    def scaled(self, given: Sequence[int | None]) -> float:
        """How much larger than the model's fixed sizes the inputs a request sends are, from
        each input's elements per sample (None: unknown): 1 for a model without open
        dimensions, whose inputs must match its shapes anyway."""
        scale = 1.0
        for (fixed, open_dims), sent in zip(self.inputs, given, strict=False):
            if open_dims and sent is not None:
                scale = max(scale, sent / max(fixed, 1))
        return scale


def sample_cost(model: Model) -> SampleCost:
    """The per-sample estimate of `model` (built, or from a dry run)."""
    linear = quadratic = 0
    for shape in model.graph.shapes:
        linear += elements(shape)
    for node in model.graph.nodes:
        more, square = layer_internals(node.layer, _input_shapes(model, node))
        linear, quadratic = linear + more, quadratic + square
    outputs = sum(elements(s) for s in model.output_shapes)
    inputs = tuple((elements(s), None in s[1:]) for s in model.input_shapes)
    return SampleCost(linear, quadratic, outputs, inputs)


def elements(shape: Shape) -> int:
    """Elements of one sample of a tensor of `shape` (batch first; open dimensions as 1)."""
    return math.prod(d or 1 for d in shape[1:])


def layer_internals(layer: Layer, inputs: list[Shape | None]) -> tuple[int, int]:
    """(linear, quadratic) elements one call of `layer` holds beyond its output, given the
    shapes of its inputs."""
    first = inputs[0] if inputs else None
    inner = getattr(layer, "model", None)
    if isinstance(inner, Model):  # a nested model: all of its own tensors
        cost = sample_cost(inner)
        return cost.linear, cost.quadratic
    if isinstance(layer, Recurrent) and first is not None:
        # The input terms of every step and the step's gate sums (gates x units each), and
        # the states it keeps for the backward pass.
        steps = first[1] or 1
        return steps * layer.units * (2 * layer.gates + layer.n_states), 0
    if isinstance(layer, Bidirectional):
        parts = [layer_internals(sub, inputs) for sub in layer.inner()]
        return sum(p[0] for p in parts), sum(p[1] for p in parts)
    if isinstance(layer, TimeDistributed) and first is not None:
        steps = first[1] or 1
        linear, square = layer_internals(layer.layer, [(first[0], *first[2:])])
        return steps * linear, steps * square
    if isinstance(layer, MultiHeadAttention):
        return _multi_head(layer, inputs)
    if isinstance(layer, Attention | AdditiveAttention):
        return _attention(layer, inputs)
    return 0, 0


def _input_shapes(model: Model, node: Node) -> list[Shape | None]:
    shapes = model.graph.shapes
    if isinstance(node.inputs, int):
        return [shapes[node.inputs]]
    return [None if s is None else shapes[s] for s in node.inputs]


def _length(shape: Shape) -> int:
    """The positions a sequence (or image) of `shape` attends over: all but batch and features."""
    return math.prod(d or 1 for d in shape[1:-1])


def _query_key(inputs: list[Shape | None]) -> tuple[Shape, Shape] | None:
    query = inputs[0] if inputs else None
    value = inputs[1] if len(inputs) > 1 else None
    key = inputs[2] if len(inputs) > 2 and inputs[2] is not None else value
    return None if query is None or key is None else (query, key)


def _attention(layer: Attention | AdditiveAttention, inputs: list[Shape | None]) -> tuple[int, int]:
    """Scores and their softmax, query length x key length; the additive (and `concat`) form
    also holds tanh(query + key) over the features before summing it."""
    pair = _query_key(inputs)
    if pair is None:
        return 0, 0
    query, key = pair
    per_pair = 2
    if isinstance(layer, AdditiveAttention) or layer.score_mode == "concat":
        per_pair += query[-1] or 1
    return 0, per_pair * _length(query) * _length(key)


def _multi_head(layer: MultiHeadAttention, inputs: list[Shape | None]) -> tuple[int, int]:
    """The projected query, key and value (and gate), the heads' combined values, and per head
    the scores and their softmax."""
    pair = _query_key(inputs)
    if pair is None:
        return 0, 0
    query, key = pair
    tq, tk, heads = _length(query), _length(key), layer.num_heads
    gate = layer.value_dim * tq if layer.use_gate else 0
    linear = heads * (layer.key_dim * (tq + tk) + layer.value_dim * (tk + tq) + gate)
    return linear, 2 * heads * tq * tk
