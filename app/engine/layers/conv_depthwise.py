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

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from app.engine.config.errors import Loc
from app.engine.config.readers import get_bool, get_int
from app.engine.config.registry import known_keys
from app.engine.layers import activations
from app.engine.layers.base import BASE_KEYS, LAYERS, Layer, Shape, option_weights
from app.engine.layers.convolutional import (
    MAX_FILTERS,
    Window,
    add_bias,
    conv_output_spatial,
    input_channels,
    keras_conv,
    read_window,
    window_config,
)
from app.engine.layers.spatial import join_shape
from app.engine.weights import initializers

_DEPTHWISE_KEYS = (
    "depth_multiplier", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
    "activation", "use_bias", "depthwise_initializer", "bias_initializer",
    "depthwise_regularizer", "bias_regularizer", "activity_regularizer",
    "depthwise_constraint", "bias_constraint",
)  # fmt: skip


class _Depthwise(Layer):
    """The depthwise part both layer kinds share (options, kernel, the grouped convolution)."""

    rank: ClassVar[int]
    #: Initializer options besides the bias's, in Keras's weight order.
    kernel_keys: ClassVar[tuple[str, ...]] = ("depthwise_initializer",)
    #: The regularizer and constraint keys in Keras's config order (the base class reads them).
    option_keys: ClassVar[tuple[str, ...]] = (
        "depthwise_regularizer", "bias_regularizer", "activity_regularizer",
        "depthwise_constraint", "bias_constraint",
    )  # fmt: skip
    #: Keras's name for the depthwise kernel ("kernel" in DepthwiseConv, where it is the only one).
    depthwise_name: ClassVar[str] = "kernel"
    weight_options = option_weights("bias", depthwise="kernel")
    bias: torch.Tensor

    def __init__(
        self,
        *,
        name: str,
        depth_multiplier: int,
        filters: int | None,
        window: Window,
        activation: Any,
        use_bias: bool,
        inits: Mapping[str, Any],
        trainable: bool,
        loc: Loc,
    ) -> None:
        super().__init__(name=name, trainable=trainable)
        self.depth_multiplier = depth_multiplier
        self.filters = filters
        self.window = window
        self.activation_name, self.activation = activations.get(activation, (*loc, "activation"))
        self.use_bias = use_bias
        # key -> (canonical config, function of shape and generator)
        self.inits = {
            key: initializers.get(inits[key], (*loc, key))
            for key in (*self.kernel_keys, "bias_initializer")
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        filters = None
        if "filters" in cls.config_keys:
            filters = get_int(config, "filters", loc, min_value=1, max_value=MAX_FILTERS)
        defaults = {key: "glorot_uniform" for key in cls.kernel_keys} | {
            "bias_initializer": "zeros"
        }
        return cls(
            name=name,
            depth_multiplier=get_int(
                config, "depth_multiplier", loc, 1, min_value=1, max_value=MAX_FILTERS
            ),
            filters=filters,
            window=read_window(config, loc, cls.rank, ("valid", "same"), strided_dilation=True),
            activation=config.get("activation"),
            use_bias=get_bool(config, "use_bias", loc, True),
            inits={key: config.get(key, default) for key, default in defaults.items()},
            trainable=get_bool(config, "trainable", loc, True),
            loc=loc,
        )

    def layer_config(self) -> dict[str, Any]:
        head: dict[str, Any] = {"depth_multiplier": self.depth_multiplier}
        if self.filters is not None:
            head["filters"] = self.filters
        return {
            **head,
            **window_config(self.window),
            "activation": self.activation_name,
            "use_bias": self.use_bias,
            **{key: config for key, (config, _) in self.inits.items()},
            **{key: None for key in self.option_keys},
        }

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        w = self.window
        channels, spatial = input_channels(input_shape, w, loc, self.class_name)
        out_spatial = conv_output_spatial(spatial, w, loc, self.class_name)
        depthwise = (*w.kernel_size, channels, self.depth_multiplier)
        init = self.inits["depthwise_initializer"][1]
        self.add_weight(self.depthwise_name, init(depthwise, generator))
        out_channels = channels * self.depth_multiplier
        if self.filters is not None:
            pointwise = (*(1,) * self.rank, out_channels, self.filters)
            init = self.inits["pointwise_initializer"][1]
            self.add_weight("pointwise_kernel", init(pointwise, generator))
            out_channels = self.filters
        if self.use_bias:
            self.add_weight("bias", self.inits["bias_initializer"][1]((out_channels,), generator))
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
        return self.activation(y)


class _DepthwiseConv(_Depthwise):
    config_keys = _DEPTHWISE_KEYS


@LAYERS.register("DepthwiseConv1D")
class DepthwiseConv1D(_DepthwiseConv):
    class_name = "DepthwiseConv1D"
    rank = 1


@LAYERS.register("DepthwiseConv2D")
class DepthwiseConv2D(_DepthwiseConv):
    class_name = "DepthwiseConv2D"
    rank = 2


class _SeparableConv(_Depthwise):
    config_keys = (
        *_DEPTHWISE_KEYS, "filters", "pointwise_initializer", "pointwise_regularizer",
        "pointwise_constraint",
    )  # fmt: skip
    kernel_keys = ("depthwise_initializer", "pointwise_initializer")
    option_keys = (
        "depthwise_regularizer", "pointwise_regularizer", "bias_regularizer",
        "activity_regularizer", "depthwise_constraint", "pointwise_constraint", "bias_constraint",
    )  # fmt: skip
    depthwise_name = "depthwise_kernel"
    weight_options = option_weights(
        "bias", depthwise="depthwise_kernel", pointwise="pointwise_kernel"
    )
    pointwise_kernel: torch.Tensor

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        w = self.window
        y = self.depthwise(x)
        # Keras hands the dilation to the 1x1 convolution too (it changes nothing there).
        y = keras_conv(y, self.pointwise_kernel, (1,) * self.rank, "valid", w.dilation_rate,
                       w.channels_last)  # fmt: skip
        if self.use_bias:
            y = add_bias(y, self.bias, w.channels_last)
        return self.activation(y)


@LAYERS.register("SeparableConv1D", "SeparableConvolution1D")
class SeparableConv1D(_SeparableConv):
    class_name = "SeparableConv1D"
    rank = 1


@LAYERS.register("SeparableConv2D", "SeparableConvolution2D")
class SeparableConv2D(_SeparableConv):
    class_name = "SeparableConv2D"
    rank = 2
