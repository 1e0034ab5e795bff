"""Differential fit tests of the normalization layers against Keras 3 on its torch backend: the
same model and initial weights, shuffle off; every History value and the final weights (moving
statistics included) must agree to float32 precision. A frozen BatchNormalization normalizes with
its moving statistics inside fit and never updates them."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest

from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import fit_results
from tests.support.keras_json import keras_json
from tests.support.tolerance import assert_within_drift, keras_drift

RNG = np.random.default_rng(3)
X = (RNG.normal(size=(100, 5)) * 3.0 + 1.5).astype(np.float32)
Y = RNG.integers(0, 3, size=(100,)).astype(np.float32)
STATS = {"moving_mean_initializer": {"class_name": "RandomNormal", "config": {"stddev": 0.5}},
         "moving_variance_initializer": {"class_name": "RandomUniform",
                                         "config": {"minval": 0.5, "maxval": 2.0}},
         "gamma_initializer": {"class_name": "RandomNormal", "config": {"mean": 1.0}},
         "beta_initializer": "random_normal"}  # fmt: skip


def _model(spec: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 5]}}]
    layers += [{"class_name": c, "config": cfg} for c, cfg in spec]
    return {"class_name": "Sequential", "config": {"name": "m", "layers": layers}}


def _bn_model(bn: dict[str, Any]) -> dict[str, Any]:
    return _model([
        ("Dense", {"units": 8, "activation": "relu"}),
        ("BatchNormalization", bn),
        ("Dense", {"units": 3, "activation": "softmax"}),
    ])  # fmt: skip


COMPILE = {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["acc"]}
SGD = {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.02, "momentum": 0.5}},
       "loss": "sparse_categorical_crossentropy", "metrics": ["acc"]}  # fmt: skip


@pytest.mark.parametrize(
    ("config", "compile_cfg"),
    [
        (_bn_model({}), COMPILE),
        (_bn_model({"momentum": 0.8, "epsilon": 0.01, **STATS}), SGD),
        (_bn_model({"center": False, "scale": False, **STATS}), COMPILE),
        (_bn_model({"trainable": False, **STATS}), COMPILE),
        (_bn_model({"trainable": False, **STATS}), SGD),
        (_model([("Dense", {"units": 6, "activation": "tanh"}),
                 ("LayerNormalization", {}),
                 ("Dense", {"units": 8}), ("GroupNormalization", {"groups": 2}),
                 ("BatchNormalization", {"momentum": 0.5}),
                 ("Dense", {"units": 3, "activation": "softmax"})]), SGD),
    ],
    ids=["bn", "bn_sgd_momentum", "bn_no_affine", "bn_frozen", "bn_frozen_sgd", "layer_group"],
)  # fmt: skip
def test_fit_with_normalization_matches_keras(
    keras: ModuleType, config: dict[str, Any], compile_cfg: dict[str, Any]
) -> None:
    def compiled() -> Any:
        km = keras.models.model_from_json(keras_json(config))
        km.compile(optimizer=keras.optimizers.get(compile_cfg["optimizer"]),
                   loss=compile_cfg["loss"], metrics=compile_cfg["metrics"])  # fmt: skip
        return km

    def keras_run(weights: list[np.ndarray]) -> dict[str, Any]:
        km = compiled()
        km.set_weights(weights)
        kh = km.fit(X, Y, batch_size=16, epochs=3, shuffle=False, validation_split=0.2, verbose=0)
        theirs = km.evaluate(X, Y, batch_size=32, return_dict=True, verbose=0)
        return fit_results(
            kh.history,
            km,
            lambda m: {
                **{f"evaluate {k}": v for k, v in theirs.items()},
                "predict": m.predict(X, verbose=0),
            },
        )

    # Keras's initial weights drawn from a fixed seed: unseeded, they depended on the tests run
    # before in the same process, and so did how close to its tolerance the case came.
    keras.utils.set_random_seed(0)
    initial = compiled().get_weights()
    ours = Model.from_config(config, seed=0)
    ours.set_weights(initial)
    before = ours.get_weights()
    trainer = Trainer(ours, CompileSpec.parse(compile_cfg), device=None)
    history = trainer.fit(X, Y, args=FitArgs(batch_size=16, epochs=3, shuffle=False,
                                             validation_split=0.2))  # fmt: skip
    after = trainer.model.get_weights()
    frozen = any(c.get("trainable") is False for c in _configs(config))
    if frozen:  # gamma, beta and the moving statistics of the frozen layer never change
        assert all(np.array_equal(after[i], before[i]) for i in (2, 3, 4, 5))
    else:  # the moving statistics did move
        assert not np.array_equal(after[-3], before[-3])
    ours_eval = trainer.evaluate(X, Y, batch_size=32)
    results = {**{f"history {k}": v for k, v in history.history.items()},
               **{f"weight {i}": w for i, w in enumerate(after)},
               **{f"evaluate {k}": v for k, v in ours_eval.items()},
               "predict": trainer.predict(X)}  # fmt: skip
    # Every value held to a multiple of Keras's own drift from initial weights moved by one ulp
    # (CONTRIBUTING.md).
    theirs = keras_run(initial)
    drift = keras_drift(keras_run, initial, baseline=theirs)
    assert isinstance(drift, dict)
    assert_within_drift(results, theirs, drift)


def _configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [layer["config"] for layer in config["config"]["layers"]]


def test_frozen_batch_norm_counts_as_non_trainable(keras: ModuleType) -> None:
    config = _bn_model({"trainable": False})
    km = keras.models.model_from_json(keras_json(config))
    summary = Model.from_config(config, seed=0).summary()
    assert summary["total_params"] == km.count_params()
    trainable = sum(int(np.prod(w.shape)) for w in km.trainable_weights)
    assert summary["trainable_params"] == trainable


R_AFFINE = {"beta_initializer": "random_normal", "gamma_initializer": "random_normal"}


@pytest.mark.parametrize(
    ("spec", "shape"),
    [
        ([("BatchNormalization", {"momentum": 0.7, **STATS})], [6]),
        ([("BatchNormalization", {"axis": 1, **STATS})], [3, 4]),
        ([("LayerNormalization", R_AFFINE)], [6]),
        ([("LayerNormalization", {"axis": [1, 3], **R_AFFINE})], [2, 3, 4]),
        ([("GroupNormalization", {"groups": 2, "axis": 1, **R_AFFINE})], [4, 3]),
        ([("UnitNormalization", {"axis": [1, 2]})], [3, 4]),
    ],
)  # fmt: skip
def test_training_mode_forward_and_gradients_match_keras(
    keras: ModuleType, spec: list[tuple[str, dict[str, Any]]], shape: list[int]
) -> None:
    """One training-mode call: outputs, input and weight gradients, and updated moving stats."""
    import torch

    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, *shape]}}]
    layers += [{"class_name": c, "config": cfg} for c, cfg in spec]
    config = {"class_name": "Sequential", "config": {"name": "m", "layers": layers}}
    km = keras.models.model_from_json(keras_json(config))
    ours = Model.from_config(config, seed=0)
    ours.set_weights(km.get_weights())
    x = torch.as_tensor((RNG.normal(size=(16, *shape)) * 3 + 1).astype(np.float32))
    g = torch.as_tensor(RNG.normal(size=(16, *shape)).astype(np.float32))
    xk, xo = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    yk, yo = km(xk, training=True), ours(xo, training=True)
    (yk * g).sum().backward()
    (yo * g).sum().backward()
    np.testing.assert_allclose(yo.detach().numpy(), yk.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(xo.grad.numpy(), xk.grad.numpy(), rtol=1e-6, atol=1e-7)
    theirs = [v.value.grad.numpy() for v in km.trainable_weights]
    mine = [p.grad.numpy() for p in ours.trainable_parameters()]
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for a, b in zip(ours.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
