"""A small convolutional classifier fitted here and in Keras 3 (torch backend) from the same
weights and data, shuffle off: every History value and the final weights must agree. Also: our
canonical config of the spatial layers loads in Keras, and config errors name the field."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.models.model import Model
from tests.support.keras_fit import (
    assert_refused,
    assert_split_fit_matches_keras,
    sequential,
)

# 32 steps of Adam or SGD with momentum 0.9 through convolutions: every value held to a multiple
# of Keras's one-ulp drift (CONTRIBUTING.md).

RNG = np.random.default_rng(3)
X = RNG.normal(size=(40, 8, 7, 2)).astype(np.float32)
Y = RNG.integers(0, 3, size=(40,)).astype(np.float32)


CNN = [
    ("Conv2D", {"filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"}),
    ("MaxPooling2D", {"pool_size": 2, "padding": "same"}),
    ("Conv2D", {"filters": 3, "kernel_size": [2, 2], "strides": 1, "activation": "tanh"}),
    ("AveragePooling2D", {"pool_size": 2, "strides": 1}),
    ("Flatten", {}),
    ("Dense", {"units": 3, "activation": "softmax"}),
]


@pytest.mark.parametrize(
    "compile_cfg",
    [
        {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]},
        {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9}},
         "loss": "sparse_categorical_crossentropy", "metrics": ["acc"]},
    ],
)  # fmt: skip
def test_conv_classifier_fit_matches_keras(keras: ModuleType, compile_cfg: dict[str, Any]) -> None:
    config = sequential(CNN, [None, 8, 7, 2])
    assert_split_fit_matches_keras(keras, config, compile_cfg, X, Y, batch_size=8, epochs=4,
                                   validation_split=0.2)  # fmt: skip


def test_keras_loads_our_canonical_spatial_config(keras: ModuleType) -> None:
    layers = [
        ("ZeroPadding2D", {"padding": [[1, 0], [0, 1]]}),
        ("Conv2D", {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "SAME",
                    "data_format": "channels_first", "kernel_initializer": "he_normal"}),
        ("Cropping2D", {"cropping": 1, "data_format": "channels_first"}),
        ("MaxPool2D", {"data_format": "channels_first"}),
        ("UpSampling2D", {"size": 2, "data_format": "channels_first",
                          "interpolation": "bilinear"}),
        ("GlobalAvgPool2D", {"data_format": "channels_first", "keepdims": True}),
        ("Reshape", {"target_shape": [-1]}),
        ("RepeatVector", {"n": 2}),
        ("Conv1D", {"filters": 2, "kernel_size": 2, "padding": "causal"}),
        ("Permute", {"dims": [2, 1]}),
        ("ZeroPadding1D", {"padding": 1}),
        ("Cropping1D", {"cropping": [0, 1]}),
        ("UpSampling1D", {}),
        ("AvgPool1D", {"pool_size": 2}),
        ("GlobalMaxPool1D", {}),
    ]  # fmt: skip
    ours = Model.from_config(sequential(layers, [None, 2, 13, 12]), seed=1)
    canonical = ours.get_config()
    km = keras.models.model_from_json(json.dumps(canonical))
    assert [layer.__class__.__name__ for layer in km.layers] == [
        layer.class_name for layer in ours.layers
    ]
    km.set_weights(ours.get_weights())
    x = RNG.normal(size=(5, 2, 13, 12)).astype(np.float32)
    with torch.no_grad():
        got = ours(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(got, km.predict(x, verbose=0), rtol=1e-6, atol=1e-7)
    assert ours.summary()["output_shape"] == list(km.output_shape)
    again = Model.from_config(canonical, seed=1)
    assert again.get_config() == canonical


@pytest.mark.parametrize(
    ("layer", "shape", "loc", "text"),
    [
        (("Conv2D", {"filters": 2, "kernel_size": 3, "padding": "full"}), [None, 5, 5, 1],
         ("padding",), "must be one of"),
        (("Conv2D", {"filters": 2, "kernel_size": 3, "padding": "causal"}), [None, 5, 5, 1],
         ("padding",), "must be one of"),
        (("Conv2D", {"filters": 2}), [None, 5, 5, 1], ("kernel_size",), "required"),
        (("Conv2D", {"filters": 2, "kernel_size": [3, 3, 3]}), [None, 5, 5, 1],
         ("kernel_size",), "list of 2"),
        (("Conv2D", {"filters": 2, "kernel_size": 3, "strides": 2, "dilation_rate": 2}),
         [None, 9, 9, 1], ("dilation_rate",), "strides > 1"),
        (("Conv2D", {"filters": 3, "kernel_size": 3, "groups": 2}), [None, 5, 5, 2],
         ("groups",), "divide"),
        (("Conv2D", {"filters": 2, "kernel_size": 3, "groups": 2}), [None, 5, 5, 3],
         (), "divide by groups"),
        (("Conv2D", {"filters": 2, "kernel_size": 3, "kernel_regularizer": "l3"}),
         [None, 5, 5, 1], ("kernel_regularizer",), "unknown regularizer"),
        (("Conv2D", {"filters": 2, "kernel_size": 3, "bogus": 1}), [None, 5, 5, 1],
         ("bogus",), "unknown argument"),
        (("Conv2D", {"filters": 2, "kernel_size": 3, "data_format": "nhwc"}), [None, 5, 5, 1],
         ("data_format",), "must be one of"),
        (("Conv2D", {"filters": 2, "kernel_size": 3}), [None, 5, 5], (), "rank 4"),
        (("Conv2D", {"filters": 2, "kernel_size": 6}), [None, 5, 5, 1], (), "does not fit"),
        (("Conv1D", {"filters": 2, "kernel_size": 2}), [None, 5, None], (), "channel"),
        (("MaxPooling2D", {"padding": "SAME"}), [None, 5, 5, 1], ("padding",), "must be one"),
        (("MaxPooling2D", {"pool_size": 6}), [None, 5, 5, 1], (), "does not fit"),
        (("AveragePooling1D", {}), [None, 5, 1], ("pool_size",), "required"),
        (("AveragePooling1D", {"pool_size": 2, "strides": 0}), [None, 5, 1], ("strides",),
         "values must be in"),
        (("GlobalMaxPooling2D", {}), [None, 5, 1], (), "rank 4"),
        (("Reshape", {"target_shape": [4, -1, -1]}), [None, 8], ("target_shape",), "one -1"),
        (("Reshape", {"target_shape": [3, 3]}), [None, 8], (), "cannot reshape"),
        (("Reshape", {"target_shape": [3, -1]}), [None, 8], (), "cannot reshape"),
        (("Permute", {"dims": [1, 3]}), [None, 2, 3], ("dims",), "permutation"),
        (("Permute", {"dims": [2, 1]}), [None, 2, 3, 4], (), "rank 3"),
        (("RepeatVector", {"n": 0}), [None, 3], ("n",), ">= 1"),
        (("RepeatVector", {"n": 2}), [None, 3, 2], (), "rank 2"),
        (("UpSampling2D", {"interpolation": "lanczos3"}), [None, 3, 3, 1],
         ("interpolation",), "nearest"),
        (("ZeroPadding2D", {"padding": [[1, 2, 3], [0, 0]]}), [None, 3, 3, 1],
         ("padding", "0"), "list of 2"),
        (("ZeroPadding1D", {"padding": -1}), [None, 3, 1], ("padding",), "values must be in"),
        (("Cropping2D", {"cropping": [[2, 1], [0, 0]]}), [None, 3, 3, 1], (), "leaves nothing"),
        (("Cropping1D", {"cropping": 1, "data_format": "channels_first"}), [None, 3, 1],
         ("data_format",), "unknown argument"),
    ],
)  # fmt: skip
def test_spatial_config_errors_name_the_field(
    layer: tuple[str, dict[str, Any]], shape: list[Any], loc: tuple[Any, ...], text: str
) -> None:
    assert_refused(layer, shape, loc, text)
