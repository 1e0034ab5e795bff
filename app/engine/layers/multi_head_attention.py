"""MultiHeadAttention as Keras 3 runs it on torch: its config, weights and call.

Four EinsumDense projections (query, key, value, attention_output; a sigmoid gate too when
`use_gate`) hold the weights, so `get_weights()` lists each one's kernel then bias in Keras's
order: query, key, gate, value, attention_output. The attention between them is
`attention_ops.DotProductAttention` (Keras's fused and einsum routes). Masks arrive as a list
(query, value, key); the output's mask is the query's.

As in Keras, the layer's regularizer and constraint options (activity_regularizer included)
belong to the projections: each projection reads all five, so the activity penalty falls on every
projection's output, and the layer itself keeps no activity regularizer of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_bool, get_int
from app.engine.config.registry import known_keys
from app.engine.layers.attention import AttentionLayer, read_dropout
from app.engine.layers.attention_ops import (
    DotProductAttention,
    attention_axes,
    attention_shapes,
    projection_equation,
    read_dims,
)
from app.engine.layers.base import BASE_KEYS, LAYERS, Layer, Shape
from app.engine.layers.einsum_dense import EinsumDense, parse_equation
from app.engine.layers.kernel import KERNEL_OPTION_KEYS
from app.engine.weights import initializers

MAX_HEADS = 1024
MAX_HEAD_DIM = 1 << 16
# The projections in Keras's weight order, with the names `.keras` weight files store them under.
_PROJECTIONS = (
    ("query", "query_dense"), ("key", "key_dense"), ("gate", "_gate_dense"),
    ("value", "value_dense"), ("attention_output", "output_dense"),
)  # fmt: skip
# The options Keras hands every projection (its `_get_common_kwargs_for_sublayer`), in the order
# its config writes them: a kernel layer's regularizer and constraint keys.
_SUBLAYER_OPTIONS = KERNEL_OPTION_KEYS


@LAYERS.register("MultiHeadAttention")
class MultiHeadAttention(AttentionLayer):
    class_name = "MultiHeadAttention"
    input_names = ("query", "value", "key")
    mask_argument = False  # Keras's call reads the masks attached to query, value and key
    config_keys = (
        "num_heads", "key_dim", "value_dim", "dropout", "use_bias", "output_shape",
        "attention_axes", "sliding_window", "flash_attention", "kernel_initializer",
        "bias_initializer", "kernel_regularizer", "bias_regularizer", "activity_regularizer",
        "kernel_constraint", "bias_constraint", "use_gate", "seed",
    )  # fmt: skip

    def __init__(
        self,
        *,
        name: str,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        output_shape: tuple[int, ...] | None = None,
        attention_axes: tuple[int, ...] | None = None,
        sliding_window: int | None = None,
        use_gate: bool = False,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        seed: int | None = None,
        trainable: bool = True,
        loc: Loc = (),
    ) -> None:
        super().__init__(name=name, trainable=trainable)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim or key_dim
        self.dropout = dropout
        self.use_bias = use_bias
        self.output_dims = output_shape
        self.attention_axes = attention_axes
        self.sliding_window = sliding_window
        self.use_gate = use_gate
        self.seed = seed
        self.kernel_init_config, _ = initializers.get(
            kernel_initializer, (*loc, "kernel_initializer")
        )
        self.bias_init_config, _ = initializers.get(bias_initializer, (*loc, "bias_initializer"))
        self.generator: torch.Generator | None = None
        # (projection, where a .keras file stores it), in Keras's weight order; and by name.
        self._projections: list[tuple[EinsumDense, str]] = []
        self._by_name: dict[str, EinsumDense] = {}
        self._attention: DotProductAttention | None = None
        # The projections' options as given (read when each is built), where they were read,
        # and as Keras writes them back.
        self._sublayer_config: dict[str, Any] = dict.fromkeys(_SUBLAYER_OPTIONS)
        self._sublayer_loc: Loc = loc
        self._written_options: dict[str, Any] = dict.fromkeys(_SUBLAYER_OPTIONS)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        if config.get("flash_attention") not in (None, False):
            raise ConfigError(
                (*loc, "flash_attention"),
                "only null or false: float32 attention never runs the flash kernel",
            )
        return cls(
            name=name,
            num_heads=get_int(config, "num_heads", loc, min_value=1, max_value=MAX_HEADS),
            key_dim=get_int(config, "key_dim", loc, min_value=1, max_value=MAX_HEAD_DIM),
            value_dim=get_int(config, "value_dim", loc, None, min_value=1, max_value=MAX_HEAD_DIM),
            dropout=read_dropout(config, "dropout", loc),
            use_bias=get_bool(config, "use_bias", loc, True),
            output_shape=read_dims(config.get("output_shape"), (*loc, "output_shape"), what="size"),
            attention_axes=read_dims(
                config.get("attention_axes"), (*loc, "attention_axes"), what="axis"
            ),
            sliding_window=get_int(config, "sliding_window", loc, None, min_value=1),
            use_gate=get_bool(config, "use_gate", loc, False),
            kernel_initializer=config.get("kernel_initializer", "glorot_uniform"),
            bias_initializer=config.get("bias_initializer", "zeros"),
            seed=get_int(config, "seed", loc, None),
            trainable=get_bool(config, "trainable", loc, True),
            loc=loc,
        )

    def layer_config(self) -> dict[str, Any]:
        return {
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "use_gate": self.use_gate,
            "output_shape": None if self.output_dims is None else list(self.output_dims),
            # Keras writes the normalized axes once built.
            "attention_axes": None if self.attention_axes is None else list(self.attention_axes),
            "sliding_window": self.sliding_window,
            "kernel_initializer": self.kernel_init_config,
            "bias_initializer": self.bias_init_config,
            **self._written_options,  # here for Keras's key order; see get_config
            "seed": self.seed,
        }

    def get_config(self) -> dict[str, Any]:
        # The base class writes this layer's own activity_regularizer (always unset) over the
        # one the projections take.
        return {**super().get_config(), **self._written_options}

    def read_options(self, config: Mapping[str, Any], loc: Loc) -> None:
        """Keep the five options for the projections (read again by each when it is built)
        instead of applying them to this layer. A stand-in projection reads them now, so a bad
        option is refused with the config, and says how Keras writes them back."""
        self._sublayer_config = {key: config.get(key) for key in _SUBLAYER_OPTIONS}
        self._sublayer_loc = loc
        stand_in = EinsumDense(
            name="options", equation=parse_equation("ab,bc->ac", loc), output_shape=(1,), loc=loc
        )
        stand_in.read_options(self._sublayer_config, loc)
        written = stand_in.get_config()
        self._written_options = {key: written[key] for key in _SUBLAYER_OPTIONS}

    # -- building --------------------------------------------------------------------------------
    def build(self, input_shape: Any, generator: torch.Generator, loc: Loc) -> Shape:
        q, v, k, features = attention_shapes(input_shape, loc)
        rank = len(q) + 1  # the projected (batch, ..., heads, channels) rank
        self.attention_axes = axes = attention_axes(self.attention_axes, rank, loc)
        for i in range(1, len(q) - 1):
            if i not in axes and None not in (q[i], v[i]) and q[i] != v[i]:
                raise ConfigError(loc, f"query {q} and value {v} differ on batch axis {i}")
        heads = self.num_heads
        self._add_projection("query", q, 1, (heads, self.key_dim), None, generator, loc)
        self._add_projection("key", k, 1, (heads, self.key_dim), None, generator, loc)
        if self.use_gate:
            self._add_projection("gate", q, 1, (heads, self.value_dim), "sigmoid", generator, loc)
        self._add_projection("value", v, 1, (heads, self.value_dim), None, generator, loc)
        out_dims = self.output_dims or (features,)
        combined = (q[0], *[None] * (len(q) - 2), heads, self.value_dim)
        self._add_projection("attention_output", combined, 2, out_dims, None, generator, loc)
        self._attention = DotProductAttention(
            rank=rank, axes=axes, key_dim=self.key_dim, dropout=self.dropout,
            sliding_window=self.sliding_window, owner=self.name,
        )  # fmt: skip
        return (*q[:-1], *self.output_dims) if self.output_dims else q

    def _add_projection(
        self,
        name: str,
        input_shape: Shape,
        contracted: int,
        new: tuple[int, ...],
        activation: str | None,
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
            kernel_initializer=self.kernel_init_config,
            bias_initializer=self.bias_init_config,
            trainable=self.trainable,
            loc=loc,
        )
        layer.read_options(self._sublayer_config, self._sublayer_loc)
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
            use_causal_mask and q_mask is None and v_mask is None and k_mask is None
            and self.sliding_window is None
        )  # fmt: skip
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
