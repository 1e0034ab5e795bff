"""Keras depthwise and separable convolutions: DepthwiseConv1D/2D, SeparableConv1D/2D.

The depthwise kernel is stored in Keras's layout `(*kernel_size, in_channels, depth_multiplier)`;
Keras's torch backend (`depthwise_conv`) reshapes it to a grouped-convolution kernel
`(*kernel_size, 1, in * depth_multiplier)`, so output channel `c * depth_multiplier + m` comes
from input channel `c`. A separable convolution is that depthwise convolution followed by a
1x1 convolution with the pointwise kernel `(1, ..., in * depth_multiplier, filters)`, then the
bias. Both run through `keras_conv`, the same sequence of torch ops Keras runs. Unlike Conv,
Keras accepts strides > 1 together with dilation > 1 here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from app.engine.config.errors import Loc
from app.engine.layers import activations, keys, spatial
from app.engine.layers.base import LAYERS, Layer, Shape
from app.engine.layers.convolutional import (
    MAX_FILTERS,
    Window,
    add_bias,
    conv_output_spatial,
    input_channels,
    keras_conv,
    padding_key,
    spatial_ints,
)
from app.engine.layers.spatial import join_shape


class _Depthwise(Layer):
    """The depthwise part both layer kinds share (the window, the kernel, the grouped
    convolution); each kind declares its keys, in Keras's config order."""

    rank: ClassVar[int]
    #: The `padding` values the layer takes.
    paddings: ClassVar[tuple[str, ...]] = ("valid", "same")
    #: Keras's name for the depthwise kernel ("kernel" in DepthwiseConv, where it is the only one).
    depthwise_name: ClassVar[str] = "kernel"
    depth_multiplier: int
    filters: int | None = None
    activation: str
    use_bias: bool
    depthwise_initializer: dict[str, Any]
    bias_initializer: dict[str, Any]
    bias: torch.Tensor

    def __post_init__(self) -> None:
        self.window = Window(**{field: self._value(field) for field in Window._fields})
        self.activation_fn = activations.get(self.activation, ())[1]

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        w = self.window
        channels, spatial = input_channels(input_shape, w, loc, self.class_name)
        out_spatial = conv_output_spatial(spatial, w, loc, self.class_name)
        depthwise = (*w.kernel_size, channels, self.depth_multiplier)
        depthwise_init = keys.draw(self, "depthwise_initializer", loc)
        self.add_weight(self.depthwise_name, depthwise_init(depthwise, generator))
        out_channels = channels * self.depth_multiplier
        if self.filters is not None:
            pointwise = (*(1,) * self.rank, out_channels, self.filters)
            init = keys.draw(self, "pointwise_initializer", loc)
            self.add_weight("pointwise_kernel", init(pointwise, generator))
            out_channels = self.filters
        if self.use_bias:
            bias_init = keys.draw(self, "bias_initializer", loc)
            self.add_weight("bias", bias_init((out_channels,), generator))
        return join_shape(input_shape[0], out_channels, out_spatial, w.data_format)

    def depthwise(self, x: torch.Tensor) -> torch.Tensor:
        w = self.window
        k = getattr(self, self.depthwise_name)
        grouped = k.reshape(*k.shape[:-2], 1, k.shape[-2] * k.shape[-1])
        return keras_conv(x, grouped, w.strides, w.padding, w.dilation_rate, w.channels_last)

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        y = self.depthwise(x)
        if self.use_bias:
            y = add_bias(y, self.bias, self.window.channels_last)
        return self.activation_fn(y)


class _DepthwiseConv(_Depthwise):
    depth_multiplier = keys.integer(1, min_value=1, max_value=MAX_FILTERS)
    kernel_size = spatial_ints()
    strides = spatial_ints(1)
    padding = padding_key()
    data_format = spatial.data_format()
    dilation_rate = spatial_ints(1)
    activation = keys.activation()
    use_bias = keys.boolean(True)
    depthwise_initializer = keys.initializer("glorot_uniform")
    bias_initializer = keys.initializer("zeros")
    depthwise_regularizer = keys.regularizer("kernel")
    bias_regularizer = keys.regularizer("bias")
    activity_regularizer = keys.activity_regularizer()
    depthwise_constraint = keys.constraint("kernel")
    bias_constraint = keys.constraint("bias")


@LAYERS.add()
class DepthwiseConv1D(_DepthwiseConv):
    rank = 1


@LAYERS.add()
class DepthwiseConv2D(_DepthwiseConv):
    rank = 2


class _SeparableConv(_Depthwise):
    depth_multiplier = keys.integer(1, min_value=1, max_value=MAX_FILTERS)
    filters = keys.integer(min_value=1, max_value=MAX_FILTERS)
    kernel_size = spatial_ints()
    strides = spatial_ints(1)
    padding = padding_key()
    data_format = spatial.data_format()
    dilation_rate = spatial_ints(1)
    activation = keys.activation()
    use_bias = keys.boolean(True)
    depthwise_initializer = keys.initializer("glorot_uniform")
    pointwise_initializer = keys.initializer("glorot_uniform")
    bias_initializer = keys.initializer("zeros")
    depthwise_regularizer = keys.regularizer("depthwise_kernel")
    pointwise_regularizer = keys.regularizer("pointwise_kernel")
    bias_regularizer = keys.regularizer("bias")
    activity_regularizer = keys.activity_regularizer()
    depthwise_constraint = keys.constraint("depthwise_kernel")
    pointwise_constraint = keys.constraint("pointwise_kernel")
    bias_constraint = keys.constraint("bias")
    depthwise_name = "depthwise_kernel"
    pointwise_kernel: torch.Tensor

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        w = self.window
        y = self.depthwise(x)
        # Keras hands the dilation to the 1x1 convolution too (it changes nothing there).
        y = keras_conv(
            y, self.pointwise_kernel, (1,) * self.rank, "valid", w.dilation_rate, w.channels_last
        )
        if self.use_bias:
            y = add_bias(y, self.bias, w.channels_last)
        return self.activation_fn(y)


@LAYERS.add("SeparableConvolution1D")
class SeparableConv1D(_SeparableConv):
    rank = 1


@LAYERS.add("SeparableConvolution2D")
class SeparableConv2D(_SeparableConv):
    rank = 2
