"""Merge layers, called on a list of tensors in a Functional graph: Add, Subtract, Multiply,
Average, Maximum, Minimum, Concatenate and Dot.

Elementwise merges broadcast as Keras does: inputs of lower rank get size-1 axes inserted after
the batch axis, and the reduction runs left to right in input order (the same float32 order as
Keras). Masks: the elementwise merges pass on the OR of their inputs' masks when every input has
one; Maximum, Minimum and Multiply also ignore masked positions of an input, as Keras does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.layers import keys
from app.engine.layers.base import LAYERS, Layer, Shape
from app.engine.losses.regression import l2_normalize

Tensor = torch.Tensor
MaskList = Sequence[Tensor | None] | None


def _shapes(input_shape: Any, loc: Loc, name: str, count: int | None = None) -> list[Shape]:
    if not isinstance(input_shape, list) or not input_shape or any(s is None for s in input_shape):
        raise ConfigError(loc, f"{name} is called on a list of tensors")
    if count is not None and len(input_shape) != count:
        raise ConfigError(loc, f"{name} takes exactly {count} inputs, got {len(input_shape)}")
    return [tuple(s) for s in input_shape]


class _Merge(Layer):
    multi_input = True
    supports_masking = True
    min_inputs: ClassVar[int] = 1
    exact_inputs: ClassVar[int | None] = None

    def build(self, input_shape: Any, generator: torch.Generator, loc: Loc) -> Shape:
        shapes = _shapes(input_shape, loc, self.class_name, self.exact_inputs)
        out: list[int | None] = list(shapes[0][1:])
        rank = max(len(s) for s in shapes) - 1
        for s in shapes[1:]:
            out, other = _pad(out, rank), _pad(list(s[1:]), rank)
            merged: list[int | None] = []
            for a, b in zip(out, other, strict=True):
                if a is not None and b is not None and a != b and 1 not in (a, b):
                    raise ConfigError(
                        loc,
                        f"{self.class_name} cannot merge shapes {list(shapes[0])} and {list(s)}",
                    )
                merged.append(None if a is None or b is None else max(a, b) if 1 in (a, b) else a)
            out = merged
        self._ranks = [len(s) for s in shapes]
        return (None, *out)

    def _aligned(self, xs: Sequence[Tensor]) -> list[Tensor]:
        """Lower-rank inputs get size-1 axes after the batch axis (Keras's reshape)."""
        top = max(x.dim() for x in xs)
        out = []
        for x in xs:
            while x.dim() < top:
                x = x.unsqueeze(1)
            out.append(x)
        return out

    def compute_mask(self, x: Any, mask: Any) -> Tensor | None:
        if mask is None or any(m is None for m in mask):
            return None
        out: Tensor = mask[0]
        for m in mask[1:]:
            out = out | m
        return out


def _pad(dims: list[int | None], rank: int) -> list[int | None]:
    return [*([1] * (rank - len(dims))), *dims]


@LAYERS.add()
class Add(_Merge):
    def forward(self, x: list[Tensor], training: bool = False) -> Tensor:
        xs = self._aligned(x)
        out = xs[0]
        for t in xs[1:]:
            out = out + t
        return out


@LAYERS.add()
class Average(Add):
    def forward(self, x: list[Tensor], training: bool = False) -> Tensor:
        return super().forward(x, training) / len(x)


@LAYERS.add()
class Subtract(_Merge):
    exact_inputs = 2

    def forward(self, x: list[Tensor], training: bool = False) -> Tensor:
        a, b = self._aligned(x)
        return a - b


class _Extremum(_Merge):
    """Maximum and Minimum: a masked-out position of an input takes the other side's value."""

    uses_mask = True
    mask_argument = False  # Keras's call reads the masks attached to its inputs
    op: ClassVar[Callable[..., Tensor]]

    def forward(self, x: list[Tensor], training: bool = False, mask: MaskList = None) -> Tensor:
        xs = self._aligned(x)
        masks = _expanded_masks(xs, mask)
        out, out_mask = xs[0], masks[0]
        for t, m in zip(xs[1:], masks[1:], strict=True):
            if m is not None:
                t = torch.where(m, t, out)
            if out_mask is not None:
                out = torch.where(out_mask, out, t)
            out_mask = out_mask | m if m is not None and out_mask is not None else None
            out = type(self).op(out, t)
        return out


def _expanded_masks(xs: Sequence[Tensor], mask: MaskList) -> list[Tensor | None]:
    if mask is None:
        return [None] * len(xs)
    pairs = zip(xs, mask, strict=True)
    return [None if m is None else m.unsqueeze(-1).expand(x.shape) for x, m in pairs]


@LAYERS.add()
class Maximum(_Extremum):
    op = staticmethod(torch.maximum)


@LAYERS.add()
class Minimum(_Extremum):
    op = staticmethod(torch.minimum)


@LAYERS.add()
class Multiply(_Merge):
    """A masked-out position counts as 1; with every input masked, positions outside all masks
    are 0."""

    uses_mask = True
    mask_argument = False  # Keras's call reads the masks attached to its inputs

    def forward(self, x: list[Tensor], training: bool = False, mask: MaskList = None) -> Tensor:
        xs = self._aligned(x)
        masks = _expanded_masks(xs, mask)
        every = all(m is not None for m in masks)
        out: Tensor | None = None
        out_mask: Tensor | None = None
        for t, m in zip(xs, masks, strict=True):
            if m is not None:
                t = torch.where(m, t, torch.ones((), dtype=t.dtype, device=t.device))
                if every:
                    out_mask = m if out_mask is None else out_mask | m
            out = t if out is None else out * t
        assert out is not None
        if every and out_mask is not None:
            out = torch.where(out_mask, out, torch.zeros((), dtype=out.dtype, device=out.device))
        return out


@LAYERS.add()
class Concatenate(_Merge):
    axis = keys.integer(-1)

    def build(self, input_shape: Any, generator: torch.Generator, loc: Loc) -> Shape:
        shapes = _shapes(input_shape, loc, "Concatenate")
        rank = len(shapes[0])
        same_rank = all(len(s) == rank for s in shapes)
        if not same_rank or not -rank <= self.axis < rank or self.axis in (0, -rank):
            raise ConfigError(
                loc, f"Concatenate(axis={self.axis}) needs inputs of one rank, got {shapes}"
            )
        axis = self.axis % rank
        out: list[int | None] = list(shapes[0])
        for s in shapes[1:]:
            for i, (a, b) in enumerate(zip(out, s, strict=True)):
                if i == axis:
                    out[i] = None if a is None or b is None else a + b
                elif a is not None and b is not None and a != b:
                    raise ConfigError(
                        loc,
                        f"Concatenate(axis={self.axis}) needs inputs that match except "
                        f"on that axis, got {shapes}",
                    )
                elif a is None:
                    out[i] = b
        return (None, *out[1:])

    def forward(self, x: list[Tensor], training: bool = False) -> Tensor:
        return torch.cat(list(x), dim=self.axis)

    def compute_mask(self, x: Any, mask: Any) -> Tensor | None:
        if mask is None or all(m is None for m in mask):
            return None
        full = []
        for t, m in zip(x, mask, strict=True):
            if m is None:
                full.append(torch.ones_like(t, dtype=torch.bool))
            elif m.dim() < t.dim():
                full.append(m.unsqueeze(-1).expand(t.shape))
            else:
                full.append(m)
        return torch.any(torch.cat(full, dim=self.axis), dim=-1)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_axes(config: Mapping[str, Any], key: str, loc: Loc) -> int | list[int]:
    axes: Any = config.get(key)
    if _is_int(axes):
        return axes
    if isinstance(axes, list | tuple) and len(axes) == 2 and all(_is_int(a) for a in axes):
        return list(axes)
    raise ConfigError((*loc, key), f"must be an integer or two integers, got {axes!r}")


@LAYERS.add()
class Dot(_Merge):
    """Keras's batch_dot of two inputs along one axis each (optionally L2-normalized first)."""

    supports_masking = False
    exact_inputs = 2
    axes = keys.Key[int | list[int]](_read_axes)
    normalize = keys.boolean(False)

    def build(self, input_shape: Any, generator: torch.Generator, loc: Loc) -> Shape:
        s1, s2 = _shapes(input_shape, loc, "Dot", 2)
        if len(s1) < 2 or len(s2) < 2:
            raise ConfigError(loc, f"Dot needs inputs of rank 2 or more, got {[s1, s2]}")
        self._dims = (len(s1), len(s2))
        a0, a1 = self._axes(len(s1), len(s2))
        if 0 in (a0, a1) or not (a0 < len(s1) and a1 < len(s2)):
            raise ConfigError(
                (*loc, "axes"), f"{self.axes} is not a valid axis pair for {[s1, s2]}"
            )
        if s1[a0] is not None and s2[a1] is not None and s1[a0] != s2[a1]:
            raise ConfigError(
                (*loc, "axes"), f"the dot axes have sizes {s1[a0]} and {s2[a1]}; they must match"
            )
        out = [d for i, d in enumerate(s1) if i != a0] + [
            d for i, d in enumerate(s2) if i not in (0, a1)
        ]
        return (None, *out[1:]) if len(out) > 1 else (None, 1)

    def _axes(self, r1: int, r2: int) -> tuple[int, int]:
        if isinstance(self.axes, int):
            return (self.axes % r1, self.axes % r2) if self.axes < 0 else (self.axes, self.axes)
        a0, a1 = self.axes
        return (a0 % r1 if a0 < 0 else a0, a1 % r2 if a1 < 0 else a1)

    def forward(self, x: list[Tensor], training: bool = False) -> Tensor:
        x1, x2 = x
        a0, a1 = self._axes(x1.dim(), x2.dim())
        if self.normalize:
            x1, x2 = l2_normalize(x1, a0), l2_normalize(x2, a1)
        return _batch_dot(x1, x2, a0, a1)


def _batch_dot(x: Tensor, y: Tensor, a0: int, a1: int) -> Tensor:
    """Contract x's axis a0 with y's axis a1 per sample, with one batched matmul: x's axis moved
    last and y's moved to position 1, extra axes folded and unfolded around it."""
    x_rank, y_rank = x.dim(), y.dim()
    if x_rank == 2:
        x, a0 = x.unsqueeze(1), a0 + 1
    if y_rank == 2:
        y = y.unsqueeze(2)
    x = torch.movedim(x, a0, -1)
    y = torch.movedim(y, a1, 1)
    x_mid, y_tail = x.shape[1:-1], y.shape[2:]
    result = torch.matmul(x.reshape(x.shape[0], -1, x.shape[-1]), y.reshape(*y.shape[:2], -1))
    result = result.reshape(result.shape[0], *x_mid, *y_tail)
    if x_rank == 2:
        return result.squeeze(1)
    if y_rank == 2:
        return result.squeeze(-1)
    return result
