"""The attention arithmetic the attention layers share, as Keras 3 does it on torch.

`DotProductAttention` is MultiHeadAttention's core over projected tensors shaped
`(batch, ..., heads, channels)`. It takes Keras's two routes: with no dropout and rank-4
projections, torch's `scaled_dot_product_attention` (masked positions get -0.7 * 3.38953e38
added, so a fully masked row averages every value; causal masking alone uses `is_causal`);
otherwise Keras's einsum route over the attention axes (masked scores replaced by -1e9, masked
probabilities zeroed, dropout on the probabilities in training). Input masks combine as Keras's
`_compute_attention_mask` does.

MultiHeadAttention's reads and checks of its dimensions live here too: its `output_shape` and
`attention_axes` options, its (query, value, key) shapes and Keras's normalization of the axes.
"""

from __future__ import annotations

import math
import string
from typing import Any

import torch
import torch.nn.functional as F

from app.engine.config.errors import ConfigError, Loc
from app.engine.layers.base import Shape

MAX_RANK = 8

# What Keras's torch backend adds to masked scores in scaled_dot_product_attention.
_SDPA_MASKED = 3.38953e38 * -0.7
# What Keras's Softmax puts in masked scores on the einsum route.
_EINSUM_MASKED = -1e9


def causal_mask(q_len: int, v_len: int, device: torch.device) -> torch.Tensor:
    """Keras's causal mask `(1, Tq, Tv)`: query position i sees value positions j <= i."""
    return torch.ones((q_len, v_len), dtype=torch.bool, device=device).tril().unsqueeze(0)


def attention_dropout(
    x: torch.Tensor, rate: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Inverted dropout on attention probabilities, drawn from the trainer's generator."""
    keep = 1.0 - rate
    return x * torch.empty_like(x).bernoulli_(keep, generator=generator) / keep


def projection_equation(free: int, contracted: int, new: int) -> tuple[str, str]:
    """An einsum projection keeping `free` leading axes, contracting the next `contracted` with
    the kernel and adding `new` axes; returns (equation, the new axes as bias axes)."""
    letters = string.ascii_lowercase
    kept = letters[:free]
    summed = letters[free : free + contracted]
    added = letters[free + contracted : free + contracted + new]
    return f"{kept}{summed},{summed}{added}->{kept}{added}", added


def read_dims(value: Any, loc: Loc, *, what: str) -> tuple[int, ...] | None:
    """An int or a non-empty list of ints; None is unset, and so are 0 and [] as sizes (Keras
    tests `output_shape` for truth, but takes attention axis 0 as an axis)."""
    if value is None or (what == "size" and (value == 0 or value == [])):
        return None
    items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(items, list | tuple) or not items or len(items) > MAX_RANK:
        raise ConfigError(loc, f"must be an integer or a list of them, got {value!r}")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise ConfigError(loc, f"must be an integer or a list of them, got {value!r}")
        if what == "size" and not 1 <= item <= 1 << 20:
            raise ConfigError(loc, f"sizes must be between 1 and {1 << 20}, got {item}")
    return tuple(items)


def attention_shapes(input_shape: Any, loc: Loc) -> tuple[Shape, Shape, Shape, int]:
    """MultiHeadAttention's (query, value, key) shapes, checked, and the query's feature size."""
    if (
        not isinstance(input_shape, list | tuple)
        or len(input_shape) != 3
        or input_shape[0] is None
        or input_shape[1] is None
    ):
        raise ConfigError(loc, "MultiHeadAttention takes query, value and an optional key")
    q, v = tuple(input_shape[0]), tuple(input_shape[1])
    k = v if input_shape[2] is None else tuple(input_shape[2])
    if not 3 <= len(q) <= MAX_RANK or len(v) != len(q):
        raise ConfigError(
            loc, f"query and value must have one rank from 3 to {MAX_RANK}, got {q} and {v}"
        )
    if v[1:-1] != k[1:-1]:
        raise ConfigError(loc, f"value {v} and key {k} must agree on all but the last axis")
    features = q[-1]
    if features is None or None in (v[-1], k[-1]):
        raise ConfigError(loc, f"query, value and key need known last axes: {q}, {v}, {k}")
    return q, v, k, features


def attention_axes(given: tuple[int, ...] | None, rank: int, loc: Loc) -> tuple[int, ...]:
    """The attention axes of projected tensors of `rank`, as Keras normalizes them: all between
    the batch and the heads by default; negative axes count from the projected rank minus one."""
    if given is None:
        return tuple(range(1, rank - 2))
    axes = tuple(a if a >= 0 else rank - 1 + a for a in given)
    if any(not 1 <= a <= rank - 2 for a in axes) or len(set(axes)) != len(axes):
        raise ConfigError(
            (*loc, "attention_axes"),
            f"must name distinct non-batch, non-feature axes of a rank-{rank - 1} query, "
            f"got {list(given)}",
        )
    return axes


def attention_equations(rank: int, axes: tuple[int, ...]) -> tuple[str, str, tuple[int, ...]]:
    """For projected tensors of `rank` (batch, ..., heads, channels) attending over `axes`:
    the key-query score equation, the probabilities-value equation, and the score axes the
    softmax normalizes over. The other axes (heads included) act as batch axes."""
    letters = string.ascii_lowercase
    target = letters[:rank]
    batch = [i for i in range(rank - 1) if i not in axes]
    fresh = iter(letters[rank:])
    source = "".join(target[i] if i in batch or i == rank - 1 else next(fresh) for i in range(rank))
    scores = "".join(
        [target[i] for i in batch] + [target[i] for i in axes] + [source[i] for i in axes]
    )
    norm = tuple(range(len(scores) - len(axes), len(scores)))
    return f"{source},{target}->{scores}", f"{scores},{source}->{target}", norm


class DotProductAttention:
    """Scaled dot-product attention of projected query, key and value tensors of one rank."""

    def __init__(
        self,
        *,
        rank: int,
        axes: tuple[int, ...],
        key_dim: int,
        dropout: float,
        sliding_window: int | None,
        owner: str,
    ) -> None:
        self.axes = axes
        self.scale = 1.0 / math.sqrt(float(key_dim))
        self.dropout = dropout
        self.sliding_window = sliding_window
        self.owner = owner  # the layer's name, for errors
        self.dot_equation, self.combine_equation, self.norm_axes = attention_equations(rank, axes)
        self.fused = dropout == 0.0 and rank == 4

    def input_mask(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        masks: list[torch.Tensor | None],
        causal: bool,
    ) -> torch.Tensor | None:
        """The boolean attention mask from the query, value and key masks, the causal mask and
        the sliding window (Keras's `_compute_attention_mask`), or None."""
        q_mask, v_mask, k_mask = masks
        parts = []
        if q_mask is not None:
            parts.append(q_mask.unsqueeze(-1))
        parts += [m.unsqueeze(-2) for m in (v_mask, k_mask) if m is not None]
        t, s = query.shape[1], value.shape[1]
        if causal:
            parts.append(causal_mask(t, s, query.device))
        if self.sliding_window is not None:
            rows = torch.arange(t, device=query.device).reshape(1, t, 1)
            cols = torch.arange(s, device=query.device).reshape(1, 1, s)
            parts.append((rows - cols).abs() < self.sliding_window)
        if not parts:
            return None
        out = parts[0]
        for part in parts[1:]:
            self._check_broadcast(out, part)
            out = out & part
        return out

    def _check_broadcast(self, a: torch.Tensor, b: torch.Tensor) -> None:
        try:
            torch.broadcast_shapes(a.shape, b.shape)
        except RuntimeError:
            raise ConfigError(
                (self.owner,),
                f"the input masks ({tuple(a.shape)} and {tuple(b.shape)}) do not fit this "
                "attention; Keras cannot combine them either",
            ) from None

    def _expand_mask(self, mask: torch.Tensor, rank: int) -> torch.Tensor:
        """Keras inserts axes just before the query attention axes until the ranks match."""
        axis = -2 * len(self.axes) - 1
        while mask.dim() < rank:
            if axis < -mask.dim() - 1:
                raise ConfigError((self.owner, "attention_axes"), "the input masks do not fit")
            mask = mask.unsqueeze(axis)
        return mask

    def __call__(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        *,
        causal_only: bool,
        training: bool,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Attention output shaped like `q` with `v`'s channels. `causal_only`: causal masking
        is the only mask (`mask` is then None)."""
        if self.fused:
            additive = None
            if mask is not None:
                big = torch.tensor(_SDPA_MASKED, dtype=q.dtype, device=q.device)
                additive = torch.where(self._expand_mask(mask, 4), 0.0, big).contiguous()
            out = F.scaled_dot_product_attention(
                q.transpose(1, 2).contiguous(),
                k.transpose(1, 2).contiguous(),
                v.transpose(1, 2).contiguous(),
                attn_mask=additive,
                is_causal=causal_only,
                scale=self.scale,
            )
            return out.transpose(2, 1)
        if causal_only:
            mask = causal_mask(q.shape[1], v.shape[1], q.device)
        q = q * torch.tensor(self.scale, dtype=q.dtype, device=q.device)
        scores = torch.einsum(self.dot_equation, k, q)
        if mask is not None:
            mask = self._expand_mask(mask, scores.dim())
            self._check_broadcast(mask, scores)
            scores = torch.where(mask, scores, _EINSUM_MASKED)
        if len(self.norm_axes) > 1:
            probs = torch.exp(scores - torch.logsumexp(scores, dim=self.norm_axes, keepdim=True))
        else:
            probs = torch.softmax(scores, dim=self.norm_axes[0])
        if mask is not None:
            probs = torch.where(mask, probs, 0.0)
        if training and self.dropout > 0.0:
            probs = attention_dropout(probs, self.dropout, generator)
        return torch.einsum(self.combine_equation, probs, v)
