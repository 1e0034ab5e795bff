"""MultiHeadAttention as Keras 3 runs it on torch: its config, weights and call.

Four EinsumDense projections (query, key, value, attention_output; a sigmoid gate too when
`use_gate`) hold the weights, so `get_weights()` lists each one's kernel then bias in Keras's
order: query, key, gate, value, attention_output. The attention between them is
`attention_ops.DotProductAttention` (Keras's fused and einsum routes). Masks arrive as a list
(query, value, key); the output's mask is the query's.

As in Keras, the layer's regularizer and constraint options (activity_regularizer included)
belong to the projections: each projection takes all five, so the activity penalty falls on every
projection's output, and the layer itself keeps no activity regularizer of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_int
from app.engine.layers import keys
from app.engine.layers.attention import AttentionLayer
from app.engine.layers.attention_ops import (
    DotProductAttention,
    attention_axes,
    attention_shapes,
    projection_equation,
    read_dims,
)
from app.engine.layers.base import LAYERS, Shape, serialize_option
from app.engine.layers.einsum_dense import EinsumDense, parse_equation
from app.engine.weights import constraints, regularizers

MAX_HEADS = 1024
MAX_HEAD_DIM = 1 << 16
# The projections in Keras's weight order, with the names `.keras` weight files store them under.
_PROJECTIONS = (
    ("query", "query_dense"),
    ("key", "key_dense"),
    ("gate", "_gate_dense"),
    ("value", "value_dense"),
    ("attention_output", "output_dense"),
)


def _projection_option(kind: str) -> keys.Key[Any]:
    """A regularizer or constraint key Keras hands every projection (its
    `_get_common_kwargs_for_sublayer`): read here, applied by the projections."""
    family = regularizers if kind == "regularizer" else constraints

    def read(config: Mapping[str, Any], key: str, loc: Loc, default: Any = None) -> Any:
        return family.get(config.get(key), (*loc, key))

    return keys.Key(read, None, dump=serialize_option)


def _dims(what: str, *, name: str = "") -> keys.Key[tuple[int, ...] | None]:
    """`read_dims`: sizes or axes, written as a list (null where unset)."""

    def read(config: Mapping[str, Any], key: str, loc: Loc, default: Any = None) -> Any:
        return read_dims(config.get(key), (*loc, key), what=what)

    return keys.Key(read, None, dump=lambda dims: None if dims is None else list(dims), name=name)


def _read_flash_attention(config: Mapping[str, Any], key: str, loc: Loc, default: None) -> None:
    if config.get(key) not in (None, False):
        raise ConfigError(
            (*loc, key), "only null or false: float32 attention never runs the flash kernel"
        )


@LAYERS.add()
class MultiHeadAttention(AttentionLayer):
    input_names = ("query", "value", "key")
    mask_argument = False  # Keras's call reads the masks attached to query, value and key
    num_heads = keys.integer(min_value=1, max_value=MAX_HEADS)
    key_dim = keys.integer(min_value=1, max_value=MAX_HEAD_DIM)
    # null: key_dim (__post_init__)
    value_dim = keys.Key[int](
        partial(get_int, min_value=1, max_value=MAX_HEAD_DIM, allow_none=True), None
    )
    dropout = keys.rate(0.0)
    use_bias = keys.boolean(True)
    use_gate = keys.boolean(False)
    # The sizes of the output's last axes (`output_shape` is the built layer's shape).
    output_dims = _dims("size", name="output_shape")
    # Keras writes the normalized axes once built.
    attention_axes = _dims("axis")
    sliding_window = keys.integer_or_none(min_value=1)
    flash_attention = keys.Key[None](_read_flash_attention, None, saved=False)
    kernel_initializer = keys.initializer("glorot_uniform")
    bias_initializer = keys.initializer("zeros")
    kernel_regularizer = _projection_option("regularizer")
    bias_regularizer = _projection_option("regularizer")
    # The projections' (this layer's own `activity_regularizer` stays unset, as in Keras).
    projection_activity = keys.activity_regularizer(name="activity_regularizer")
    kernel_constraint = _projection_option("constraint")
    bias_constraint = _projection_option("constraint")
    seed = keys.integer_or_none()

    def __post_init__(self) -> None:
        self.value_dim = self.value_dim or self.key_dim
        self.generator: torch.Generator | None = None
        # (projection, where a .keras file stores it), in Keras's weight order; and by name.
        self._projections: list[tuple[EinsumDense, str]] = []
        self._by_name: dict[str, EinsumDense] = {}
        self._attention: DotProductAttention | None = None

    # -- building --------------------------------------------------------------------------------
    def build(self, input_shape: Any, generator: torch.Generator, loc: Loc) -> Shape:
        q, v, k, features = attention_shapes(input_shape, loc)
        rank = len(q) + 1  # the projected (batch, ..., heads, channels) rank
        self.attention_axes = axes = attention_axes(self.attention_axes, rank, loc)
        for i in range(1, len(q) - 1):
            if i not in axes and None not in (q[i], v[i]) and q[i] != v[i]:
                raise ConfigError(loc, f"query {q} and value {v} differ on batch axis {i}")
        heads = self.num_heads
        self._add_projection("query", q, 1, (heads, self.key_dim), "linear", generator, loc)
        self._add_projection("key", k, 1, (heads, self.key_dim), "linear", generator, loc)
        if self.use_gate:
            self._add_projection("gate", q, 1, (heads, self.value_dim), "sigmoid", generator, loc)
        self._add_projection("value", v, 1, (heads, self.value_dim), "linear", generator, loc)
        out_dims = self.output_dims or (features,)
        combined = (q[0], *[None] * (len(q) - 2), heads, self.value_dim)
        self._add_projection("attention_output", combined, 2, out_dims, "linear", generator, loc)
        self._attention = DotProductAttention(
            rank=rank,
            axes=axes,
            key_dim=self.key_dim,
            dropout=self.dropout,
            sliding_window=self.sliding_window,
            owner=self.name,
        )
        return (*q[:-1], *self.output_dims) if self.output_dims else q

    def _add_projection(
        self,
        name: str,
        input_shape: Shape,
        contracted: int,
        new: tuple[int, ...],
        activation: str,
        generator: torch.Generator,
        loc: Loc,
    ) -> None:
        free = len(input_shape) - contracted
        equation, bias_axes = projection_equation(free, contracted, len(new))
        layer = EinsumDense(
            name=name,
            equation=parse_equation(equation, loc),
            output_shape=(*[None] * (free - 1), *new),
            bias_axes=bias_axes if self.use_bias else None,
            activation=activation,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            activity_regularizer=self.projection_activity,
            kernel_constraint=self.kernel_constraint,
            bias_constraint=self.bias_constraint,
            trainable=self.trainable,
        )
        layer.output_shape = layer.build(input_shape, generator, loc)
        store = dict(_PROJECTIONS)[name]
        self.add_module(store, layer)
        self._projections.append((layer, store))
        self._by_name[name] = layer

    def keras_weights(self) -> list[tuple[str, torch.Tensor]]:
        return [
            (f"{layer.name}/{n}", t)
            for layer, _ in self._projections
            for n, t in layer.keras_weights()
        ]

    def h5_paths(self) -> list[str]:
        """Where a `.keras` weights file keeps each weight, relative to this layer's group, in
        `keras_weights()` order (Keras stores the projections under attribute names)."""
        return [
            f"{store}/vars/{i}"
            for layer, store in self._projections
            for i in range(len(layer.keras_weights()))
        ]

    # -- the projections' penalties and constraints ----------------------------------------------
    # Keras's `layer.losses`: the projections' activity penalties, then their weight penalties.
    def added_losses(self) -> list[torch.Tensor]:
        return [*self.activity_losses(), *self.weight_losses()]

    def activity_losses(self) -> list[torch.Tensor]:
        return [loss for layer, _ in self._projections for loss in layer.activity_losses()]

    def weight_losses(self) -> list[torch.Tensor]:
        return [loss for layer, _ in self._projections for loss in layer.weight_losses()]

    @property
    def has_added_losses(self) -> bool:
        return any(layer.has_added_losses for layer, _ in self._projections)

    @property
    def has_constraints(self) -> bool:
        return any(layer.has_constraints for layer, _ in self._projections)

    def apply_constraints(self) -> None:
        for layer, _ in self._projections:
            layer.apply_constraints()

    # -- running ---------------------------------------------------------------------------------
    def attend(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        key: torch.Tensor,
        masks: list[torch.Tensor | None],
        use_causal_mask: bool,
        training: bool,
    ) -> torch.Tensor:
        q_mask, v_mask, k_mask = masks
        # Causal masking alone takes torch's is_causal route on the fused path, as in Keras.
        causal_only = (
            use_causal_mask
            and q_mask is None
            and v_mask is None
            and k_mask is None
            and self.sliding_window is None
        )
        attention = self._attention
        if attention is None:
            raise RuntimeError(f"{self.name} is called before it is built")
        attn_mask = None
        if not causal_only:
            attn_mask = attention.input_mask(query, value, masks, use_causal_mask)
        layers = self._by_name
        gate = layers["gate"](query) if self.use_gate else None
        q = layers["query"](query)
        k = layers["key"](key)
        v = layers["value"](value)
        out = attention(
            q, k, v, attn_mask, causal_only=causal_only, training=training, generator=self.generator
        )
        if gate is not None:
            out = out * gate
        return layers["attention_output"](out)
