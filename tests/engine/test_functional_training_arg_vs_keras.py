"""Functional models whose nodes record `training` (Keras's `to_json()` writes `{"training":
false}` at every call of Dropout, GaussianNoise, LSTM or GRU, and the value a user passed
anywhere), against Keras 3 (torch backend). Keras's fit, evaluate and predict replace a recorded
value with the mode they run in, so a Dropout recorded with `training=True` is off in predict,
and a BatchNormalization recorded with `training=False` uses batch statistics (and moves its
moving statistics) in fit; so here.

Measured: predict and evaluate bit-identical; the fit within 2.9e-7 absolute in History and
weights, 1.8e-7 relative where values are above 1 (asserted to a multiple of Keras's own one-ulp
drift, CONTRIBUTING.md)."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import assert_fit_within_drift, named_results

RNG = np.random.default_rng(9)
T, F = 5, 3
X = RNG.normal(size=(36, T, F)).astype(np.float32)
Y = RNG.normal(size=(36, 2)).astype(np.float32)
ADAM = {"class_name": "Adam", "config": {"learning_rate": 0.01}}


def _functional(keras: ModuleType, rate: float) -> Any:
    """LSTM, Dropout (called with training=True), GRU, BatchNormalization (called with
    training=False), GaussianNoise, Dropout, Dense: every call records a `training` value."""
    layers = keras.layers
    keras.utils.set_random_seed(2)
    inp = keras.Input((T, F), name="seq")
    h = layers.LSTM(6, return_sequences=True, name="lstm")(inp)
    h = layers.Dropout(rate, name="drop_always")(h, training=True)
    h = layers.GRU(4, name="gru")(h)
    h = layers.BatchNormalization(name="bn")(h, training=False)
    h = layers.GaussianNoise(rate, name="noise")(h)
    h = layers.Dropout(rate, name="drop")(h)
    return keras.Model(inp, layers.Dense(2, name="out")(h))


def _recorded(config: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e["inbound_nodes"][0]["kwargs"].get("training", "absent")
            for e in config["config"]["layers"] if e["inbound_nodes"]}  # fmt: skip


def _ours(km: Any) -> Trainer:
    model = Model.from_config(json.loads(km.to_json()), seed=0)
    model.set_weights(km.get_weights())
    return Trainer(model, CompileSpec.parse({"optimizer": ADAM, "loss": "mse", "metrics": ["mae"]}),
                   device=torch.device("cpu"))  # fmt: skip


def test_keras_records_training_at_these_calls(keras: ModuleType) -> None:
    recorded = _recorded(json.loads(_functional(keras, 0.5).to_json()))
    assert recorded == {"lstm": False, "drop_always": True, "gru": False, "bn": False,
                        "noise": False, "drop": False, "out": "absent"}  # fmt: skip


def test_predict_and_evaluate_run_in_inference_mode_whatever_was_recorded(
    keras: ModuleType,
) -> None:
    km = _functional(keras, 0.5)
    km.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse", metrics=["mae"])
    trainer = _ours(km)
    assert np.array_equal(trainer.predict(X.tolist(), batch_size=10),
                          km.predict(X, batch_size=10, verbose=0))  # fmt: skip
    assert trainer.evaluate(X, Y, batch_size=10) == km.evaluate(
        X, Y, batch_size=10, return_dict=True, verbose=0
    )
    # In training mode the recorded False does not hold either: the dropout is on.
    with torch.no_grad():
        out = trainer.model(torch.from_numpy(X), training=True)
        assert not torch.equal(out, trainer.model(torch.from_numpy(X), training=False))


@pytest.mark.parametrize("validation", [False, True])
def test_fit_runs_in_training_mode_whatever_was_recorded(
    keras: ModuleType, validation: bool
) -> None:
    """Rates of 0 keep the fit deterministic; BatchNormalization, recorded with training=False,
    still trains on batch statistics in both."""
    km = _functional(keras, 0.0)
    km.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse", metrics=["mae"])
    trainer = _ours(km)
    val = (X[:12], Y[:12]) if validation else None
    initial = km.get_weights()

    def replay(m: Any) -> dict[str, Any]:
        kh = m.fit(X, Y, batch_size=8, epochs=3, shuffle=False, verbose=0, validation_data=val)
        return named_results(kh.history, m.get_weights())

    theirs = replay(km)
    history = trainer.fit(X, Y, args=FitArgs(batch_size=8, epochs=3, shuffle=False),
                          validation_data=val).history  # fmt: skip
    # Every value held to a multiple of Keras's own one-ulp drift (CONTRIBUTING.md).
    ours = named_results(history, trainer.model.get_weights())
    assert_fit_within_drift(keras, km, ours, theirs, initial=initial, replay=replay)
    moving_mean = km.get_layer("bn").moving_mean.numpy()
    assert not np.allclose(moving_mean, 0.0)  # batch statistics were used, in both
