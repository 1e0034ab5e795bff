"""Per-sample normalization layers: LayerNormalization, UnitNormalization, GroupNormalization,
RMSNormalization.

Each follows the arithmetic of Keras's torch backend: LayerNormalization over trailing axes is
`F.layer_norm`; over other axes it is `x * inv + (beta - mean * inv)` with
`inv = rsqrt(var + eps) * gamma` and the biased variance `E[x²] - E[x]²` (`ops/nn.py`).
The batch axis is never normalized over here (it would make a sample's output depend on the batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_axes, get_int
from app.engine.layers import keys
from app.engine.layers.base import LAYERS, Layer, Shape


def resolve_axes(
    axis: int | list[int], input_shape: Shape, loc: Loc, *, sized: bool = True
) -> list[int]:
    """The axes as sorted non-negative dimensions; each must be a non-batch axis (of known size
    if `sized`), named once."""
    rank = len(input_shape)
    given = [axis] if isinstance(axis, int) else axis
    out = []
    for a in given:
        if not -rank <= a < rank or a % rank == 0:
            raise ConfigError((*loc, "axis"), f"axis {a} is not a feature axis of {input_shape}")
        if sized and input_shape[a % rank] is None:
            raise ConfigError((*loc, "axis"), f"axis {a} of {input_shape} has no size")
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise ConfigError((*loc, "axis"), f"names an axis twice: {given}")
    if sorted(out) != [a % rank for a in sorted(given)]:
        # Keras sorts the axes as given and shapes gamma in that order, which scrambles the
        # weights when negative and positive axes are mixed.
        raise ConfigError((*loc, "axis"), "mixes negative and positive axes; use one kind")
    return sorted(out)


class _Affine(Layer):
    """Shared config of the layers with optional gamma (scale) and beta (center) weights."""

    gamma: torch.Tensor
    beta: torch.Tensor
    # Keras's LayerNormalization and GroupNormalization compute on a half-float input in it.
    half_float_input = False
    axis = keys.Key[int | list[int]](get_axes, -1)
    epsilon = keys.number(1e-3, min_value=0.0, min_exclusive=True)
    center = keys.boolean(True)
    scale = keys.boolean(True)
    beta_initializer = keys.initializer("zeros", null=True, empty=True)
    gamma_initializer = keys.initializer("ones", null=True, empty=True)
    beta_regularizer = keys.regularizer("beta")
    gamma_regularizer = keys.regularizer("gamma")
    beta_constraint = keys.constraint("beta")
    gamma_constraint = keys.constraint("gamma")

    def add_affine(self, shape: tuple[int, ...], generator: torch.Generator, loc: Loc) -> None:
        if self.scale:
            self.add_weight("gamma", keys.draw(self, "gamma_initializer", loc)(shape, generator))
        if self.center:
            self.add_weight("beta", keys.draw(self, "beta_initializer", loc)(shape, generator))

    def affine(
        self, x: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor, shape: list[int]
    ) -> torch.Tensor:
        """Keras's `x * inv + res`, with `inv = rsqrt(var + eps) * gamma` and
        `res = -mean * inv + beta`."""
        inv = torch.rsqrt(variance + self.epsilon)
        if self.scale:
            inv = inv * self.gamma.reshape(shape)
        res = -mean * inv
        if self.center:
            res = res + self.beta.reshape(shape)
        return x * inv + res


def _moments(x: torch.Tensor, dims: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.mean(x, dim=dims, keepdim=True)
    return mean, torch.mean(torch.square(x), dim=dims, keepdim=True) - torch.square(mean)


@LAYERS.add()
class LayerNormalization(_Affine):
    supports_masking = True
    rms_scaling = keys.must_be_false("is deprecated in Keras and not supported")

    def __post_init__(self) -> None:
        self._axes: list[int] = []
        self._trailing = True
        self._broadcast: list[int] = []

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        self._axes = resolve_axes(self.axis, input_shape, loc)
        rank = len(input_shape)
        sizes = tuple(int(input_shape[a] or 0) for a in self._axes)
        self._trailing = self._axes == list(range(rank - len(self._axes), rank))
        self._broadcast = [int(input_shape[d] or 0) if d in self._axes else 1 for d in range(rank)]
        self.add_affine(sizes, generator, loc)
        return input_shape

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if self._trailing:
            sizes = tuple(x.shape[a] for a in self._axes)
            gamma = self.gamma if self.scale else None
            beta = self.beta if self.center else None
            return F.layer_norm(x, sizes, gamma, beta, self.epsilon)
        mean, variance = _moments(x, self._axes)
        return self.affine(x, mean, variance, self._broadcast)


def _read_groups(config: Mapping[str, Any], key: str, loc: Loc, default: int) -> int:
    groups: int = get_int(config, key, loc, default, min_value=-1)
    if groups == 0:
        raise ConfigError((*loc, key), "must be positive, or -1 for one per channel")
    return groups


def _read_axis(config: Mapping[str, Any], key: str, loc: Loc, default: int) -> int:
    axis = get_axes(config, key, loc, default)
    if not isinstance(axis, int):
        raise ConfigError((*loc, key), f"must be an integer, got {axis!r}")
    return axis


class _Grouped(Layer):
    """GroupNormalization's `groups`, which Keras writes before the affine keys (a base class's
    keys come first, so GroupNormalization lists this base after _Affine)."""

    groups = keys.Key[int](_read_groups, 32)


@LAYERS.add()
class GroupNormalization(_Affine, _Grouped):
    supports_masking = True
    axis = keys.Key[int](_read_axis, -1)  # a single axis (in _Affine's place)

    def __post_init__(self) -> None:
        self._dim = 0
        self._broadcast: list[int] = []
        self._reduce: list[int] = []

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        (axis,) = resolve_axes(self.axis, input_shape, loc)
        dim = int(input_shape[axis] or 0)
        if self.groups == -1:
            self.groups = dim  # Keras resolves -1 at build time and writes the count back
        if dim % self.groups != 0:
            raise ConfigError(
                (*loc, "groups"), f"{self.groups} groups do not divide the {dim} channels"
            )
        rank = len(input_shape)
        self._dim = axis
        self._broadcast = [1] * rank
        self._broadcast[axis] = dim // self.groups
        self._broadcast.insert(axis, self.groups)
        self._reduce = [d for d in range(1, rank + 1) if d != axis]
        self.add_affine((dim,), generator, loc)
        return input_shape

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        a = self._dim
        shape = list(x.shape)
        grouped = x.reshape([*shape[:a], self.groups, shape[a] // self.groups, *shape[a + 1 :]])
        mean, variance = _moments(grouped, self._reduce)
        return self.affine(grouped, mean, variance, self._broadcast).reshape(shape)


@LAYERS.add()
class UnitNormalization(Layer):
    """`x * min(rsqrt(sum(x²)), 1e12)` over the axes, as Keras's `ops.normalize` (order 2)."""

    supports_masking = True
    axis = keys.Key[int | list[int]](get_axes, -1)

    def __post_init__(self) -> None:
        self._axes: list[int] = []

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        self._axes = resolve_axes(self.axis, input_shape, loc, sized=False)
        return input_shape

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        square_sum = torch.sum(torch.square(x), dim=self._axes, keepdim=True)
        return x * torch.rsqrt(square_sum).clamp_max(1e12)


@LAYERS.add()
class RMSNormalization(Layer):
    """`x * rsqrt(mean(x²) + epsilon) * scale` over `axis`, as Keras's torch backend computes it
    (`F.rms_norm`, which normalizes the last axes: other axes are refused)."""

    axis = keys.Key[int | list[int]](get_axes, -1)
    epsilon = keys.number(1e-6, min_value=0.0)
    scale: torch.Tensor

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        axes = resolve_axes(self.axis, input_shape, loc)
        rank = len(input_shape)
        if axes != list(range(rank - len(axes), rank)):
            raise ConfigError((*loc, "axis"), f"must name the last axes of {input_shape}")
        self.normalized_shape = tuple(int(input_shape[a] or 0) for a in axes)
        self.add_weight("scale", torch.ones(self.normalized_shape))
        return input_shape

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return F.rms_norm(x, self.normalized_shape, self.scale, self.epsilon)
