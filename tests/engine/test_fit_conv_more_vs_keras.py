"""Transposed, depthwise and separable convolutions in training: a small model fitted here and in
Keras 3 (torch backend) from the same weights and data, shuffle off, must give the same History
and final weights. Also: our canonical configs of these layers are Keras's own, and config and
shape errors name the field."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from app.engine.models.model import Model
from tests.support.keras_fit import (
    assert_refused,
    assert_split_fit_matches_keras,
    sequential,
)
from tests.support.keras_json import keras_json

# 32 steps of Adam or SGD with momentum 0.9 through convolutions: every value held to a multiple
# of Keras's one-ulp drift (CONTRIBUTING.md).

RNG = np.random.default_rng(5)
X = RNG.normal(size=(40, 5, 4, 2)).astype(np.float32)
Y = RNG.integers(0, 3, size=(40,)).astype(np.float32)


NET = [
    ("Conv2DTranspose", {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same",
                         "activation": "relu"}),
    ("SeparableConv2D", {"filters": 4, "kernel_size": 3, "depth_multiplier": 2, "strides": 2,
                         "padding": "same", "activation": "tanh"}),
    ("DepthwiseConv2D", {"kernel_size": 2}),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 2, "strides": 2, "output_padding": 1,
                         "data_format": "channels_last"}),
    ("Flatten", {}),
    ("Dense", {"units": 3, "activation": "softmax"}),
]  # fmt: skip


@pytest.mark.parametrize(
    "compile_cfg",
    [
        {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
        {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.05, "momentum": 0.9}},
         "loss": "sparse_categorical_crossentropy"},
    ],
)  # fmt: skip
def test_transpose_separable_fit_matches_keras(
    keras: ModuleType, compile_cfg: dict[str, Any]
) -> None:
    config = sequential(NET, [None, 5, 4, 2])
    assert_split_fit_matches_keras(keras, config, compile_cfg, X, Y, batch_size=8, epochs=4,
                                   validation_split=0.2)  # fmt: skip


LAYERS = [
    ("Conv1DTranspose", {"filters": 2, "kernel_size": 3}),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": [3, 2], "strides": 2, "padding": "SAME",
                         "output_padding": 1, "kernel_initializer": "he_normal"}),
    ("Conv3DTranspose", {"filters": 2, "kernel_size": 2, "data_format": "channels_first"}),
    ("DepthwiseConv1D", {"kernel_size": 2, "depth_multiplier": 2}),
    ("DepthwiseConv2D", {"kernel_size": 3, "depthwise_initializer": "ones", "use_bias": False}),
    ("SeparableConv1D", {"filters": 2, "kernel_size": 2, "pointwise_initializer": "zeros"}),
    ("SeparableConv2D", {"filters": 2, "kernel_size": 3, "dilation_rate": 2, "strides": 2,
                         "activation": "relu", "bias_initializer": "ones"}),
]  # fmt: skip
SHAPES = {1: [None, 9, 3], 2: [None, 9, 8, 3], 3: [None, 3, 4, 4, 3]}


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer[0])
def test_keras_reads_our_canonical_config_as_the_original(
    keras: ModuleType, layer: tuple[str, dict[str, Any]]
) -> None:
    rank = next(int(c) for c in layer[0] if c.isdigit())
    config = sequential([layer], SHAPES[rank])
    ours = Model.from_config(config, seed=2)
    canonical = ours.get_config()
    km = keras.models.model_from_json(json.dumps(canonical))
    original = keras.models.model_from_json(keras_json(config))

    def layer_config(m: Any) -> dict[str, Any]:
        return {k: v for k, v in m.layers[0].get_config().items() if k != "name"}

    assert layer_config(km) == layer_config(original)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in km.get_weights()]
    assert ours.summary()["output_shape"] == list(km.output_shape)
    assert Model.from_config(canonical, seed=2).get_config() == canonical


@pytest.mark.parametrize(
    ("layer", "shape", "loc", "text"),
    [
        (("Conv2DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2,
                              "output_padding": 2}), [None, 5, 5, 1],
         ("output_padding",), "less than strides"),
        (("Conv2DTranspose", {"filters": 2, "kernel_size": 3, "output_padding": [0, 0, 0]}),
         [None, 5, 5, 1], ("output_padding",), "list of 2"),
        (("Conv1DTranspose", {"filters": 2, "kernel_size": 3, "output_padding": -1}),
         [None, 5, 1], ("output_padding",), "values must be in"),
        (("Conv1DTranspose", {"filters": 2, "kernel_size": 3, "padding": "causal"}),
         [None, 5, 1], ("padding",), "must be one of"),
        (("Conv2DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2,
                              "dilation_rate": 2}), [None, 5, 5, 1],
         ("dilation_rate",), "strides > 1"),
        (("Conv2DTranspose", {"filters": 2, "kernel_size": 3, "groups": 1}), [None, 5, 5, 1],
         ("groups",), "unknown argument"),
        (("Conv2DTranspose", {"filters": 2, "kernel_size": 2, "padding": "same",
                              "output_padding": 0}), [None, 1, 5, 1], (), "empty output"),
        (("Conv3DTranspose", {"filters": 0, "kernel_size": 2}), [None, 2, 2, 2, 1],
         ("filters",), ">= 1"),
        (("Conv2DTranspose", {"filters": 2, "kernel_size": 2,
                              "kernel_regularizer": "orthogonal_regularizer"}),
         [None, 5, 5, 1], ("kernel_regularizer",), "rank-2 weights only"),
        (("Conv2DTranspose", {"filters": 2, "kernel_size": 2}), [None, 5, 5, None], (),
         "channel"),
        (("DepthwiseConv2D", {"kernel_size": 6}), [None, 5, 5, 1], (), "does not fit"),
        (("DepthwiseConv2D", {"kernel_size": 2, "depth_multiplier": 0}), [None, 5, 5, 1],
         ("depth_multiplier",), ">= 1"),
        (("DepthwiseConv2D", {"kernel_size": 2, "filters": 3}), [None, 5, 5, 1],
         ("filters",), "unknown argument"),
        (("DepthwiseConv1D", {"kernel_size": 2, "padding": "causal"}), [None, 5, 1],
         ("padding",), "must be one of"),
        (("DepthwiseConv2D", {"kernel_size": 2, "depthwise_initializer": "nope"}),
         [None, 5, 5, 1], ("depthwise_initializer",), "unknown initializer"),
        (("DepthwiseConv2D", {"kernel_size": 2, "depthwise_constraint": {
            "class_name": "UnitNorm", "config": {"axis": 4}}}),
         [None, 5, 5, 1], ("depthwise_constraint", "config", "axis"), "out of range"),
        (("DepthwiseConv2D", {"kernel_size": 2}), [None, 5, 5], (), "rank 4"),
        (("SeparableConv2D", {"kernel_size": 2}), [None, 5, 5, 1], ("filters",), "required"),
        (("SeparableConv2D", {"filters": 2, "kernel_size": 3, "dilation_rate": 3}),
         [None, 6, 9, 1], (), "does not fit"),
        (("SeparableConv1D", {"filters": 2, "kernel_size": 2,
                              "pointwise_initializer": {"class_name": "Nope"}}),
         [None, 5, 1], ("pointwise_initializer",), "unknown initializer"),
        (("SeparableConv1D", {"filters": 2, "kernel_size": 2, "pointwise_regularizer": "l1_l2"}),
         [None, 5, 1], ("pointwise_regularizer",), "unknown regularizer"),
        (("SeparableConv2D", {"filters": 2, "kernel_size": [2, 2, 2]}), [None, 5, 5, 1],
         ("kernel_size",), "list of 2"),
        (("SeparableConv2D", {"filters": 2, "kernel_size": 2, "activation": "nope"}),
         [None, 5, 5, 1], ("activation",), "unknown activation"),
    ],
)  # fmt: skip
def test_config_errors_name_the_field(
    layer: tuple[str, dict[str, Any]], shape: list[Any], loc: tuple[Any, ...], text: str
) -> None:
    assert_refused(layer, shape, loc, text)
