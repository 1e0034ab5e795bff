"""Keras pooling layers: Max/AveragePooling1D/2D/3D and Global{Average,Max}Pooling1D/2D/3D.

The forward pass follows Keras's torch backend (`backend/torch/nn.py` `max_pool`/`average_pool`):
channels_last inputs are permuted to channels-first; "same" padding is TF-style, handed to torch
when symmetric (average pooling then excludes the padding, `count_include_pad=False`) and applied
by **replicating the edge** when asymmetric. So an asymmetric "same" AveragePooling averages the
replicated edge values into the border windows (TensorFlow would exclude them); we match Keras's
torch backend, which is the reference here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from app.engine.config.declared import REQUIRED, Derived
from app.engine.config.errors import Loc
from app.engine.layers import keys, spatial
from app.engine.layers.base import LAYERS, Layer, Shape
from app.engine.layers.spatial import (
    IntTuple,
    apply_same_padding,
    join_shape,
    output_length,
    split_shape,
    to_channels_first,
    to_channels_last,
)

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


class _ContiguousGrad(torch.autograd.Function):
    """The identity, whose gradient is made contiguous (channels-first): the gradient that
    Keras's `.contiguous()` before its pooling would have passed back, in the same layout."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def _max_pool_in_place(x: torch.Tensor, pool: Any) -> torch.Tensor:
    """Max pooling of a channels_last `x` on the CPU, bit for bit Keras's, without its copy.

    Keras permutes `x` to channels-first and makes it contiguous before pooling (a full copy of
    the input, which a convolution before it left channels_last in memory), and pooling over a
    contiguous tensor is also several times slower than over channels_last memory on the CPU.
    Here the pooling runs on the channels_last memory as it is. The values and the chosen
    indices are the same (the CPU's kernels for both layouts scan each window in the same
    order and take the first maximum, NaN first), so the outputs are Keras's; the output is
    made contiguous channels-first, and the input's gradient too (`_ContiguousGrad`), as
    Keras's are, so every later sum (a bias's or a kernel's gradient, a global pooling, a
    normalization) runs over the same layout in the same order. Checked bit for bit against
    Keras's path by `tests/engine/test_pooling_layout.py`."""
    return pool(_ContiguousGrad.apply(x.movedim(-1, 1))).contiguous()


def _default_pool(cls: type[_Pooling]) -> Any:
    return REQUIRED if cls.default_pool is None else (cls.default_pool,) * cls.rank


class _Pooling(Layer):
    rank: ClassVar[int]
    mode: ClassVar[str]  # "max" or "average"
    #: Keras's default pool size (None: required, as for AveragePooling).
    default_pool: ClassVar[int | None]
    pool_size = IntTuple(Derived(_default_pool))
    # Keras's pooling layers take "valid"/"same" exactly as written.
    padding = spatial.padding(("valid", "same"), any_case=False)
    strides = IntTuple(None)  # null: the pool size
    data_format = spatial.data_format()

    def __post_init__(self) -> None:
        if self.strides is None:
            self.strides = self.pool_size

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        channels, lengths = split_shape(
            input_shape, self.rank, self.data_format, loc, self.class_name
        )
        out = tuple(
            output_length(length, k, s, self.padding, 1, loc, self.class_name)
            for length, k, s in zip(lengths, self.pool_size, self.strides, strict=True)
        )
        return join_shape(input_shape[0], channels, out, self.data_format)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        channels_last = self.data_format == "channels_last"
        if (channels_last and self.mode == "max" and self.rank > 1 and self.padding == "valid"
                and x.device.type == "cpu"):  # fmt: skip
            pool = _MAX[self.rank]
            y = _max_pool_in_place(x, lambda t: pool(t, self.pool_size, self.strides, 0))
            return to_channels_last(y)
        if channels_last:
            x = to_channels_first(x)
        padding: list[int] | int = 0
        if self.padding == "same":
            ones = (1,) * self.rank
            x, padding = apply_same_padding(x, self.pool_size, self.strides, ones, "replicate")
        if self.mode == "max":
            y = _MAX[self.rank](x, self.pool_size, self.strides, padding)
        else:
            y = _AVG[self.rank](x, self.pool_size, self.strides, padding, count_include_pad=False)
        return to_channels_last(y) if channels_last else y


@LAYERS.add("MaxPool1D")
class MaxPooling1D(_Pooling):
    rank, mode, default_pool = 1, "max", 2


@LAYERS.add("MaxPool2D")
class MaxPooling2D(_Pooling):
    rank, mode, default_pool = 2, "max", 2


@LAYERS.add("MaxPool3D")
class MaxPooling3D(_Pooling):
    rank, mode, default_pool = 3, "max", 2


@LAYERS.add("AvgPool1D")
class AveragePooling1D(_Pooling):
    rank, mode, default_pool = 1, "average", None


@LAYERS.add("AvgPool2D")
class AveragePooling2D(_Pooling):
    rank, mode, default_pool = 2, "average", None


@LAYERS.add("AvgPool3D")
class AveragePooling3D(_Pooling):
    rank, mode, default_pool = 3, "average", None


class _GlobalPooling(Layer):
    rank: ClassVar[int]
    reduce: ClassVar[str]  # "mean" or "max"
    data_format = spatial.data_format()
    keepdims = keys.boolean(False)

    def __post_init__(self) -> None:
        first = 1 if self.data_format == "channels_last" else 2
        self.axes = tuple(range(first, first + self.rank))

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        channels, _ = split_shape(input_shape, self.rank, self.data_format, loc, self.class_name)
        if not self.keepdims:
            return (input_shape[0], channels)
        return join_shape(input_shape[0], channels, (1,) * self.rank, self.data_format)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if self.reduce == "mean":
            return torch.mean(x, self.axes, self.keepdims)
        return torch.amax(x, dim=self.axes, keepdim=self.keepdims)


@LAYERS.add("GlobalAvgPool1D")
class GlobalAveragePooling1D(_GlobalPooling):
    """With a Keras mask (batch, steps), the mean is over the unmasked steps; the mask stops
    here, as in Keras."""

    rank, reduce = 1, "mean"
    supports_masking = True
    uses_mask = True

    def compute_mask(self, x: Any, mask: Any) -> torch.Tensor | None:
        return None

    def mask_shape(self, input_shape: Any) -> Any:
        steps = 1 if self.data_format == "channels_last" else 2
        return (input_shape[0], input_shape[steps])

    def forward(
        self, x: torch.Tensor, training: bool = False, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if mask is None:
            return super().forward(x, training)
        keep = mask.to(torch.bool).unsqueeze(2 if self.data_format == "channels_last" else 1)
        total = torch.sum(torch.where(keep, x, 0.0), self.axes, self.keepdims)
        return total / torch.sum(keep.to(x.dtype), self.axes, self.keepdims)


@LAYERS.add("GlobalAvgPool2D")
class GlobalAveragePooling2D(_GlobalPooling):
    rank, reduce = 2, "mean"


@LAYERS.add("GlobalAvgPool3D")
class GlobalAveragePooling3D(_GlobalPooling):
    rank, reduce = 3, "mean"


@LAYERS.add("GlobalMaxPool1D")
class GlobalMaxPooling1D(_GlobalPooling):
    rank, reduce = 1, "max"


@LAYERS.add("GlobalMaxPool2D")
class GlobalMaxPooling2D(_GlobalPooling):
    rank, reduce = 2, "max"


@LAYERS.add("GlobalMaxPool3D")
class GlobalMaxPooling3D(_GlobalPooling):
    rank, reduce = 3, "max"
