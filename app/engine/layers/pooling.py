"""Keras pooling layers: Max/AveragePooling1D/2D/3D and Global{Average,Max}Pooling1D/2D/3D.

The forward pass follows Keras's torch backend (`backend/torch/nn.py` `max_pool`/`average_pool`):
channels_last inputs are permuted to channels-first; "same" padding is TF-style, handed to torch
when symmetric (average pooling then excludes the padding, `count_include_pad=False`) and applied
by **replicating the edge** when asymmetric. So an asymmetric "same" AveragePooling averages the
replicated edge values into the border windows (TensorFlow would exclude them); we match Keras's
torch backend, which is the reference here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from app.engine.config.errors import Loc
from app.engine.config.readers import get_bool
from app.engine.config.registry import known_keys
from app.engine.layers.base import BASE_KEYS, LAYERS, Layer, Shape
from app.engine.layers.spatial import (
    apply_same_padding,
    get_data_format,
    get_int_tuple,
    get_padding,
    join_shape,
    output_length,
    split_shape,
    to_channels_first,
    to_channels_last,
)

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


class _Pooling(Layer):
    rank: ClassVar[int]
    mode: ClassVar[str]  # "max" or "average"
    #: Keras's default pool size (None: required, as for AveragePooling).
    default_pool: ClassVar[int | None]
    config_keys = ("pool_size", "strides", "padding", "data_format")

    def __init__(
        self,
        *,
        name: str,
        pool_size: tuple[int, ...],
        strides: tuple[int, ...],
        padding: str,
        data_format: str,
    ) -> None:
        super().__init__(name=name)
        self.pool_size = pool_size
        self.strides = strides
        self.padding = padding
        self.data_format = data_format

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        pool = get_int_tuple(config, "pool_size", loc, cls.rank, cls.default_pool)
        return cls(
            name=name,
            pool_size=pool,
            strides=get_int_tuple(config, "strides", loc, cls.rank, list(pool)),
            # Keras's pooling layers take "valid"/"same" exactly as written.
            padding=get_padding(config, loc, ("valid", "same"), any_case=False),
            data_format=get_data_format(config, loc),
        )

    def layer_config(self) -> dict[str, Any]:
        return {
            "pool_size": list(self.pool_size),
            "padding": self.padding,
            "strides": list(self.strides),
            "data_format": self.data_format,
        }

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        channels, spatial = split_shape(
            input_shape, self.rank, self.data_format, loc, self.class_name
        )
        out = tuple(
            output_length(length, k, s, self.padding, 1, loc, self.class_name)
            for length, k, s in zip(spatial, self.pool_size, self.strides, strict=True)
        )
        return join_shape(input_shape[0], channels, out, self.data_format)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        channels_last = self.data_format == "channels_last"
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


@LAYERS.register("MaxPooling1D", "MaxPool1D")
class MaxPooling1D(_Pooling):
    class_name = "MaxPooling1D"
    rank, mode, default_pool = 1, "max", 2


@LAYERS.register("MaxPooling2D", "MaxPool2D")
class MaxPooling2D(_Pooling):
    class_name = "MaxPooling2D"
    rank, mode, default_pool = 2, "max", 2


@LAYERS.register("MaxPooling3D", "MaxPool3D")
class MaxPooling3D(_Pooling):
    class_name = "MaxPooling3D"
    rank, mode, default_pool = 3, "max", 2


@LAYERS.register("AveragePooling1D", "AvgPool1D")
class AveragePooling1D(_Pooling):
    class_name = "AveragePooling1D"
    rank, mode, default_pool = 1, "average", None


@LAYERS.register("AveragePooling2D", "AvgPool2D")
class AveragePooling2D(_Pooling):
    class_name = "AveragePooling2D"
    rank, mode, default_pool = 2, "average", None


@LAYERS.register("AveragePooling3D", "AvgPool3D")
class AveragePooling3D(_Pooling):
    class_name = "AveragePooling3D"
    rank, mode, default_pool = 3, "average", None


class _GlobalPooling(Layer):
    rank: ClassVar[int]
    reduce: ClassVar[str]  # "mean" or "max"
    config_keys = ("data_format", "keepdims")

    def __init__(self, *, name: str, data_format: str, keepdims: bool) -> None:
        super().__init__(name=name)
        self.data_format = data_format
        self.keepdims = keepdims
        first = 1 if data_format == "channels_last" else 2
        self.axes = tuple(range(first, first + self.rank))

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        return cls(
            name=name,
            data_format=get_data_format(config, loc),
            keepdims=get_bool(config, "keepdims", loc, False),
        )

    def layer_config(self) -> dict[str, Any]:
        return {"data_format": self.data_format, "keepdims": self.keepdims}

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        channels, _ = split_shape(input_shape, self.rank, self.data_format, loc, self.class_name)
        if not self.keepdims:
            return (input_shape[0], channels)
        return join_shape(input_shape[0], channels, (1,) * self.rank, self.data_format)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if self.reduce == "mean":
            return torch.mean(x, self.axes, self.keepdims)
        return torch.amax(x, dim=self.axes, keepdim=self.keepdims)


@LAYERS.register("GlobalAveragePooling1D", "GlobalAvgPool1D")
class GlobalAveragePooling1D(_GlobalPooling):
    """With a Keras mask (batch, steps), the mean is over the unmasked steps; the mask stops
    here, as in Keras."""

    class_name = "GlobalAveragePooling1D"
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


@LAYERS.register("GlobalAveragePooling2D", "GlobalAvgPool2D")
class GlobalAveragePooling2D(_GlobalPooling):
    class_name = "GlobalAveragePooling2D"
    rank, reduce = 2, "mean"


@LAYERS.register("GlobalAveragePooling3D", "GlobalAvgPool3D")
class GlobalAveragePooling3D(_GlobalPooling):
    class_name = "GlobalAveragePooling3D"
    rank, reduce = 3, "mean"


@LAYERS.register("GlobalMaxPooling1D", "GlobalMaxPool1D")
class GlobalMaxPooling1D(_GlobalPooling):
    class_name = "GlobalMaxPooling1D"
    rank, reduce = 1, "max"


@LAYERS.register("GlobalMaxPooling2D", "GlobalMaxPool2D")
class GlobalMaxPooling2D(_GlobalPooling):
    class_name = "GlobalMaxPooling2D"
    rank, reduce = 2, "max"


@LAYERS.register("GlobalMaxPooling3D", "GlobalMaxPool3D")
class GlobalMaxPooling3D(_GlobalPooling):
    class_name = "GlobalMaxPooling3D"
    rank, reduce = 3, "max"
