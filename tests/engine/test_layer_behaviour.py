"""Behaviour of the embedding, activation, rescaling and noise layers beyond inference: fits
against Keras, id checks, training-only randomness from the trainer's generator, configs that
Keras loads back, and config errors that name the field."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.config.errors import ConfigError, DataError
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_json import keras_json

RTOL, ATOL = 1e-6, 1e-6  # as in test_fit_vs_keras.py
RNG = np.random.default_rng(5)


def _model(spec: list[tuple[str, dict[str, Any]]], shape: list[Any]) -> dict[str, Any]:
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": shape}}]
    layers += [{"class_name": c, "config": cfg} for c, cfg in spec]
    return {"class_name": "Sequential", "config": {"name": "m", "layers": layers}}


def _fit_both(keras: ModuleType, config: dict[str, Any], compile_cfg: dict[str, Any],
              x: np.ndarray, y: np.ndarray) -> None:  # fmt: skip
    km = keras.models.model_from_json(keras_json(config))
    km.compile(optimizer=keras.optimizers.get(compile_cfg["optimizer"]),
               loss=compile_cfg["loss"], metrics=compile_cfg.get("metrics"))  # fmt: skip
    ours = Model.from_config(config, seed=0)
    ours.set_weights(km.get_weights())
    trainer = Trainer(ours, CompileSpec.parse(compile_cfg), device=None)
    kh = km.fit(x, y, batch_size=8, epochs=3, shuffle=False, validation_split=0.25, verbose=0)
    history = trainer.fit(
        x, y, args=FitArgs(batch_size=8, epochs=3, shuffle=False, validation_split=0.25)
    )
    assert sorted(history.history) == sorted(kh.history)
    for key, values in kh.history.items():
        np.testing.assert_allclose(history.history[key], values, rtol=RTOL, atol=ATOL, err_msg=key)
    for a, b in zip(trainer.model.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


IDS = RNG.integers(0, 12, size=(48, 5)).astype(np.float32)
LABELS = RNG.integers(0, 3, size=(48,)).astype(np.float32)
X6 = RNG.normal(size=(48, 6)).astype(np.float32)
SCCE = {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["acc"]}


def test_embedding_fit_matches_keras(keras: ModuleType) -> None:
    config = _model([
        ("Embedding", {"input_dim": 12, "output_dim": 4}),
        ("Flatten", {}),
        ("Dense", {"units": 3, "activation": "softmax"}),
    ], [None, 5])  # fmt: skip
    _fit_both(keras, config, SCCE, IDS, LABELS)


def test_activation_layers_fit_matches_keras(keras: ModuleType) -> None:
    config = _model([
        ("Dense", {"units": 8}),
        ("PReLU", {"alpha_initializer": {"class_name": "Constant", "config": {"value": 0.2}}}),
        ("Dense", {"units": 8}),
        ("ReLU", {"max_value": 2.0, "negative_slope": 0.1, "threshold": 0.05}),
        ("Dense", {"units": 8}), ("LeakyReLU", {}), ("Dense", {"units": 8}), ("ELU", {}),
        ("Rescaling", {"scale": 0.5, "offset": 0.1}),
        ("Dense", {"units": 3}), ("Softmax", {}),
    ], [None, 6])  # fmt: skip
    _fit_both(keras, config, SCCE, X6, LABELS)


def test_fractional_ids_truncate_as_keras_does(keras: ModuleType) -> None:
    config = _model([("Embedding", {"input_dim": 6, "output_dim": 3})], [None, 4])
    km = keras.models.model_from_json(keras_json(config))
    ours = Model.from_config(config, seed=0)
    ours.set_weights(km.get_weights())
    x = np.array([[0.0, 2.7, 5.99, -0.5], [1.2, 3.0, 4.5, 0.9]], dtype=np.float32)
    with torch.no_grad():
        got = ours(torch.as_tensor(x)).numpy()
    np.testing.assert_array_equal(got, km.predict(x, verbose=0))


@pytest.mark.parametrize("bad", [6.0, -1.0, -3.0, 1e9])
def test_out_of_range_ids_are_a_data_error(bad: float) -> None:
    config = _model([("Embedding", {"input_dim": 6, "output_dim": 3}), ("Flatten", {}),
                     ("Dense", {"units": 2, "activation": "softmax"})], [None, 2])  # fmt: skip
    model = Model.from_config(config, seed=0)
    x = np.array([[1.0, 2.0], [3.0, bad]], dtype=np.float32)
    with pytest.raises(DataError, match=r"\[0, 6\)"):
        model(torch.as_tensor(x))
    trainer = Trainer(model, CompileSpec.parse(SCCE), device=None)
    y = np.zeros((2,), dtype=np.float32)
    with pytest.raises(DataError, match="ids must be integers") as info:
        trainer.plan_fit(x, y, args=FitArgs(batch_size=1, epochs=1, shuffle=False))
    assert info.value.loc == ("x",)  # found while checking the request, before any training


def _train(layer: tuple[str, dict[str, Any]], shape: list[int], seed: int) -> torch.Tensor:
    model = Model.from_config(_model([layer], [None, *shape]), seed=0)
    model.set_generator(torch.Generator().manual_seed(seed))
    x = torch.ones((400, *shape))
    assert torch.equal(model(x, training=False), x)  # the identity outside training
    return model(x, training=True)


def test_gaussian_noise_and_dropout_draw_from_the_generator() -> None:
    noisy = _train(("GaussianNoise", {"stddev": 0.3}), [50], seed=1)
    assert torch.equal(noisy, _train(("GaussianNoise", {"stddev": 0.3}), [50], seed=1))
    assert not torch.equal(noisy, _train(("GaussianNoise", {"stddev": 0.3}), [50], seed=2))
    assert abs(noisy.mean().item() - 1.0) < 0.01 and abs(noisy.std().item() - 0.3) < 0.01
    scaled = _train(("GaussianDropout", {"rate": 0.2}), [50], seed=1)
    assert abs(scaled.mean().item() - 1.0) < 0.01 and abs(scaled.std().item() - 0.5) < 0.01


@pytest.mark.parametrize(
    ("layer", "shape", "channel"),
    [
        (("SpatialDropout1D", {"rate": 0.3}), [7, 20], 2),
        (("SpatialDropout2D", {"rate": 0.3}), [3, 4, 20], 3),
        (("SpatialDropout2D", {"rate": 0.3, "data_format": "channels_first"}), [20, 3, 4], 1),
    ],
)
def test_spatial_dropout_drops_whole_channels(layer: Any, shape: list[int], channel: int) -> None:
    out = _train(layer, shape, seed=3)
    assert set(out.unique().tolist()) <= {0.0, (torch.ones(()) / 0.7).item()}
    per_channel = out.movedim(channel, 1).reshape(out.shape[0], out.shape[channel], -1)
    assert torch.equal(per_channel.amin(dim=2), per_channel.amax(dim=2))  # one draw per channel
    assert abs((out == 0).float().mean().item() - 0.3) < 0.02
    assert torch.equal(out, _train(layer, shape, seed=3))


def test_keras_loads_our_canonical_configs(keras: ModuleType) -> None:
    config = _model([
        ("Dense", {"units": 6}), ("Reshape", {"target_shape": [2, 3]}),
        ("BatchNormalization", {"momentum": 0.9}), ("LayerNormalization", {"axis": [1, 2]}),
        ("GroupNormalization", {"groups": -1}), ("UnitNormalization", {}),
        ("SpatialDropout1D", {"rate": 0.1}), ("GaussianNoise", {"stddev": 0.1}),
        ("GaussianDropout", {"rate": 0.1}), ("PReLU", {"shared_axes": [1]}), ("ReLU", {}),
        ("LeakyReLU", {}), ("ELU", {"alpha": 0.5}), ("Softmax", {"axis": [1, 2]}),
        ("Rescaling", {"scale": 2.0}), ("Flatten", {}),
    ], [None, 4])  # fmt: skip
    ours = Model.from_config(config, seed=4)
    km = keras.models.model_from_json(json.dumps(ours.get_config()))
    km.set_weights(ours.get_weights())
    x = RNG.normal(size=(5, 4)).astype(np.float32)
    with torch.no_grad():
        got = ours(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(km.predict(x, verbose=0), got, rtol=1e-6, atol=1e-7)
    again = Model.from_config(ours.get_config(), seed=4)
    assert again.get_config() == ours.get_config()
    spatial = next(e for e in ours.get_config()["config"]["layers"]
                   if e["class_name"] == "SpatialDropout1D")  # fmt: skip
    assert "trainable" not in spatial["config"]  # Keras's SpatialDropout takes no `trainable`


@pytest.mark.parametrize(
    ("layer", "shape", "key", "text"),
    [
        (("BatchNormalization", {"renorm": True}), [None, 3], "renorm", "not supported"),
        (("BatchNormalization", {"synchronized": True}), [None, 3], "synchronized", "not supp"),
        (("BatchNormalization", {"axis": 0}), [None, 3], "axis", "feature axis"),
        (("BatchNormalization", {"axis": 1}), [None, None, 3], "axis", "no size"),
        (("BatchNormalization", {"gamma_constraint": "positive"}), [None, 3], "gamma_constraint",
         "unknown constraint"),
        (("LayerNormalization", {"rms_scaling": True}), [None, 3], "rms_scaling", "deprecated"),
        (("LayerNormalization", {"axis": [1, -1]}), [None, 2, 3], "axis", "mixes"),
        (("LayerNormalization", {"axis": [2, 2]}), [None, 2, 3], "axis", "twice"),
        (("GroupNormalization", {"groups": 4}), [None, 6], "groups", "do not divide"),
        (("GroupNormalization", {"groups": 0}), [None, 6], "groups", "positive"),
        (("Embedding", {"input_dim": 5, "output_dim": 2, "mask_zero": 1}), [None, 3],
         "mask_zero", "true or false"),
        (("Embedding", {"output_dim": 2}), [None, 3], "input_dim", "required"),
        (("Embedding", {"input_dim": 1 << 25, "output_dim": 2}), [None, 3], "input_dim", "<="),
        (("ReLU", {"max_value": -1.0}), [None, 3], "max_value", ">="),
        (("LeakyReLU", {"negative_slope": -0.1}), [None, 3], "negative_slope", ">="),
        (("PReLU", {"shared_axes": [3]}), [None, 3], "shared_axes", "not in"),
        (("PReLU", {}), [None, None, 3], "shared_axes", "no size"),
        (("Softmax", {"axis": 0}), [None, 3], "axis", "feature axis"),
        (("Rescaling", {"scale": [1.0, 2.0]}), [None, 2], "scale", "single number"),
        (("Rescaling", {}), [None, 2], "scale", "required"),
        (("GaussianNoise", {"stddev": 1.5}), [None, 2], "stddev", "<= 1.0"),
        (("GaussianDropout", {"rate": 1.0}), [None, 2], "rate", "< 1.0"),
        (("SpatialDropout1D", {"rate": 0.1}), [None, 2], None, "rank 3"),
        (("SpatialDropout2D", {"rate": 0.1, "noise_shape": None}), [None, 2, 2, 2],
         "noise_shape", "unknown argument"),
    ],
)  # fmt: skip
def test_config_errors_name_the_field(layer: Any, shape: Any, key: Any, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Model.from_config(_model([layer], shape), seed=0)
    expected = ("config", "layers", 1, "config", *(() if key is None else (key,)))
    assert info.value.loc == expected
    assert text in info.value.message
