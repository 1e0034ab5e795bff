"""Keras's Attention (dot-product or concat scores) and AdditiveAttention, plus what the attention
layers share about their calls: the call options, the mask list and the dropout option.

Both are called on a list `[query, value]` or `[query, value, key]` (key defaults to value) with a
list of masks: the value mask hides key positions (their scores lose 1e9 before the softmax, as
Keras subtracts rather than replaces), and the query mask zeroes the output rows of padded query
positions and is the output's mask.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.layers import keys
from app.engine.layers.attention_ops import attention_dropout, causal_mask
from app.engine.layers.base import LAYERS, Layer, Shape
from app.engine.weights import initializers

# Keras subtracts this from masked scores (its float32 "max value").
_MASKED_SCORE = 1.0e9


def check_call_options(options: Mapping[str, Any], loc: Loc) -> None:
    """A node's call options for an attention layer: `use_causal_mask` must be true or false;
    `return_attention_scores` is refused (a layer call here gives one output)."""
    causal = options.get("use_causal_mask", False)
    if not isinstance(causal, bool):
        raise ConfigError((*loc, "use_causal_mask"), f"must be true or false, got {causal!r}")
    if options.get("return_attention_scores", False) not in (False, None):
        raise ConfigError(
            (*loc, "return_attention_scores"),
            "is not supported: a layer call gives one output here (the attention output)",
        )


def mask_list(mask: Any) -> list[torch.Tensor | None]:
    """The (query, value, key) masks as bool tensors or None, from a list aligned with the
    inputs (or None)."""
    masks = [mask] if mask is None or isinstance(mask, torch.Tensor) else list(mask)
    masks = [None if m is None else m.bool() for m in masks]
    return [*masks, None, None, None][:3]


class AttentionLayer(Layer):
    """What the attention layers share about their calls: a list of inputs (query, value and
    an optional key) with a list of masks, the query's mask as the output's, and the call
    options."""

    uses_mask = True
    supports_masking = True
    call_options = ("use_causal_mask", "return_attention_scores")

    def check_options(self, options: Mapping[str, Any], loc: Loc) -> None:
        check_call_options(options, loc)

    def compute_mask(self, x: Any, mask: Any) -> torch.Tensor | None:
        return mask_list(mask)[0]

    def forward(
        self,
        x: Any,
        training: bool = False,
        mask: Any = None,
        use_causal_mask: bool = False,
        return_attention_scores: bool = False,
    ) -> torch.Tensor:
        check_call_options(
            {
                "use_causal_mask": use_causal_mask,
                "return_attention_scores": return_attention_scores,
            },
            (self.name,),
        )
        query, value = x[0], x[1]
        key = x[2] if len(x) > 2 and x[2] is not None else value
        return self.attend(query, value, key, mask_list(mask), use_causal_mask, training)

    def attend(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        key: torch.Tensor,
        masks: list[torch.Tensor | None],
        use_causal_mask: bool,
        training: bool,
    ) -> torch.Tensor:
        """The layer's output; the key defaults to the value, `masks` are (query, value, key)."""
        raise NotImplementedError


class _ScoredAttention(AttentionLayer):
    """What Attention and AdditiveAttention share: the shapes, the weights built for the query,
    and the masked softmax over the scores; each declares its keys, in Keras's config order."""

    multi_input = True
    use_scale: bool
    dropout: float
    #: The score function ("dot" or "concat"; AdditiveAttention has its own).
    score_mode: str = "dot"
    scale: torch.Tensor
    concat_score_weight: torch.Tensor

    def __post_init__(self) -> None:
        self.generator: torch.Generator | None = None

    def build(self, input_shape: Any, generator: torch.Generator, loc: Loc) -> Shape:
        q, v, _ = self._shapes(input_shape, loc)
        self.create_weights(q, generator, loc)
        return (*q[:-1], v[-1])

    def _shapes(self, input_shape: Any, loc: Loc) -> tuple[Shape, Shape, Shape]:
        if not isinstance(input_shape, list | tuple) or not 2 <= len(input_shape) <= 3:
            raise ConfigError(loc, f"{self.class_name} takes [query, value] or [query, value, key]")
        shapes = [tuple(s) for s in input_shape if s is not None]
        q, v = shapes[0], shapes[1]
        k = shapes[2] if len(shapes) > 2 else v
        if len(q) < 3 or len({len(q), len(v), len(k)}) != 1:
            raise ConfigError(
                loc, f"query, value and key must have one rank of at least 3, got {q}, {v}, {k}"
            )

        def clash(a: int | None, b: int | None) -> bool:
            return a is not None and b is not None and a != b

        if clash(q[-1], k[-1]):
            raise ConfigError(loc, f"query and key need the same last dimension, got {q}, {k}")
        if clash(k[-2], v[-2]):
            raise ConfigError(loc, f"value and key need the same length, got {v}, {k}")
        if any(clash(a, b) for s in (v, k) for a, b in zip(q[:-2], s[:-2], strict=True)):
            raise ConfigError(loc, f"query, value and key disagree on batch dims: {q}, {v}, {k}")
        return q, v, k

    def create_weights(self, query_shape: Shape, generator: torch.Generator, loc: Loc) -> None:
        raise NotImplementedError

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attend(
        self,
        q: torch.Tensor,
        v: torch.Tensor,
        k: torch.Tensor,
        masks: list[torch.Tensor | None],
        use_causal_mask: bool,
        training: bool,
    ) -> torch.Tensor:
        q_mask, v_mask, _ = masks
        scores = self.scores(q, k)
        keep = v_mask
        if use_causal_mask:
            causal = causal_mask(scores.shape[-2], scores.shape[-1], scores.device)
            keep = causal if v_mask is None else v_mask.unsqueeze(-2) & causal
        if keep is not None:
            hidden = torch.logical_not(keep)
            if hidden.dim() == 2:
                hidden = hidden.unsqueeze(-2)
            scores = torch.where(hidden, scores - _MASKED_SCORE, scores)
        weights = torch.softmax(scores, dim=-1)
        if training and self.dropout > 0:
            weights = attention_dropout(weights, self.dropout, self.generator)
        out = torch.matmul(weights, v)
        if q_mask is not None:
            out = torch.where(q_mask.unsqueeze(-1), out, 0.0)
        return out


@LAYERS.add()
class Attention(_ScoredAttention):
    """Luong-style attention: scores `query . key^T` (times `scale` when `use_scale`), or with
    `score_mode="concat"` `concat_score_weight * sum(tanh(scale * (query + key)))`."""

    use_scale = keys.boolean(False)
    score_mode = keys.string("dot", choices=["dot", "concat"])
    dropout = keys.rate(0.0)
    seed = keys.integer_or_none()

    def create_weights(self, query_shape: Shape, generator: torch.Generator, loc: Loc) -> None:
        if self.use_scale:
            self.add_weight("scale", torch.ones(()))
        if self.score_mode == "concat":
            self.add_weight("concat_score_weight", torch.ones(()))

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        if self.score_mode == "dot":
            s = torch.matmul(q, k.transpose(-2, -1))
            return s * self.scale if self.use_scale else s
        pairs = q.unsqueeze(-2) + k.unsqueeze(-3)
        if self.use_scale:
            pairs = self.scale * pairs
        return self.concat_score_weight * torch.sum(torch.tanh(pairs), dim=-1)


@LAYERS.add()
class AdditiveAttention(_ScoredAttention):
    """Bahdanau-style attention: scores `sum(scale * tanh(query + key))`, `scale` a learned
    vector over the features when `use_scale` (the default)."""

    use_scale = keys.boolean(True)
    dropout = keys.rate(0.0)
    seed = keys.integer_or_none()

    def create_weights(self, query_shape: Shape, generator: torch.Generator, loc: Loc) -> None:
        dim = query_shape[-1]
        if dim is None:
            raise ConfigError(
                loc, f"AdditiveAttention needs a known query dimension, got {query_shape}"
            )
        if self.use_scale:
            _, glorot = initializers.get("glorot_uniform", loc)
            self.add_weight("scale", glorot((dim,), generator))

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        t = torch.tanh(q.unsqueeze(-2) + k.unsqueeze(-3))
        return torch.sum(self.scale * t if self.use_scale else t, dim=-1)
