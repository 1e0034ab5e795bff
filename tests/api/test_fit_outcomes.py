"""What a fit leaves behind, over HTTP (embedded mode): the same model seed and fit seed give the
same History and weights run to run (shuffling and dropout included), and a fit whose
EarlyStopping restores its best weights leaves the model holding exactly those weights, the ones
the engine's own fit ends with."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from app.engine import callbacks
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.e2e.scenario_checks import wait_for
from tests.engine.conftest import import_keras
from tests.support.keras_fit import sequential
from tests.support.keras_json import keras_json
from tests.support.tolerance import assert_within_drift, keras_drift

RNG = np.random.default_rng(11)
X = RNG.normal(size=(40, 3)).astype(np.float32)
Y = (X.sum(axis=1, keepdims=True) > 0).astype(np.float32)
MODEL = sequential([("Dense", {"units": 8, "activation": "relu"}), ("Dropout", {"rate": 0.3}),
                    ("Dense", {"units": 1, "activation": "sigmoid"})], [None, 3])  # fmt: skip
COMPILE = {"optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.05}},
           "loss": "binary_crossentropy", "metrics": ["accuracy"]}  # fmt: skip
# Patience 1 with a noisy validation loss: it stops early and the best epoch is not the last.
EARLY = {
    "class_name": "EarlyStopping",
    "config": {"monitor": "val_loss", "patience": 1, "restore_best_weights": True},
}
FIT: dict[str, Any] = {"compile": COMPILE, "x": X.tolist(), "y": Y.tolist(), "batch_size": 8,
                       "epochs": 30, "validation_split": 0.25, "seed": 5,
                       "callbacks": [EARLY]}  # fmt: skip


def _fit(client: TestClient) -> tuple[dict[str, Any], list[np.ndarray]]:
    model = client.post("/v1/models", json={"config": MODEL, "seed": 3}).json()
    job = client.post(f"/v1/models/{model['id']}/fit", json=FIT)
    assert job.status_code == 202, job.text
    done = wait_for(client, job.json()["id"], {"succeeded"})
    with np.load(io.BytesIO(client.get(f"/v1/models/{model['id']}/weights").content)) as npz:
        return done, [npz[f"arr_{i}"] for i in range(len(npz.files))]


def test_same_seeds_same_fit_and_the_model_keeps_the_restored_weights(
    client: TestClient,
) -> None:
    first, weights = _fit(client)
    second, weights_again = _fit(client)
    assert first["history"] == second["history"]
    for a, b in zip(weights, weights_again, strict=True):
        np.testing.assert_array_equal(a, b)

    # The engine's fit with the same seeds: the same History, and its final weights (restored
    # to the best epoch) are what the model now holds.
    trainer = Trainer(Model.from_config(MODEL, seed=3), CompileSpec.parse(COMPILE), device=None)
    early = callbacks.get(EARLY, ("callbacks", 0))
    history = trainer.fit(X, Y, args=FitArgs(batch_size=8, epochs=30, validation_split=0.25,
                                             seed=5), callbacks=[early])  # fmt: skip
    assert first["history"] == {k: [float(v) for v in vs] for k, vs in history.history.items()}
    val_loss = history.history["val_loss"]
    assert len(val_loss) < 30 and int(np.argmin(val_loss)) != len(val_loss) - 1
    for ours, engine in zip(weights, trainer.model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, engine)


PLAIN = sequential([("Dense", {"units": 8, "activation": "relu"}),
                    ("Dense", {"units": 1, "activation": "sigmoid"})], [None, 3])  # fmt: skip
PLAIN_FIT: dict[str, Any] = {"x": X.tolist(), "y": Y.tolist(), "batch_size": 8, "epochs": 3,
                             "shuffle": False, "validation_split": 0.25}  # fmt: skip


def _keras_three_fits(keras: Any, weights: list[np.ndarray]) -> tuple[list[Any], list[Any]]:
    """Keras from `weights`: compile, fit; fit again (the optimizer carries on); compile again,
    fit (a fresh optimizer). Each fit's History and the final weights."""
    km = keras.models.model_from_json(keras_json(PLAIN))
    km.set_weights(weights)

    def compile_and_fit(compile_first: bool) -> dict[str, list[float]]:
        if compile_first:
            km.compile(optimizer=keras.optimizers.get(COMPILE["optimizer"]),
                       loss=COMPILE["loss"], metrics=COMPILE["metrics"])  # fmt: skip
        return dict(km.fit(X, Y, batch_size=8, epochs=3, shuffle=False, validation_split=0.25,
                           verbose=0).history)  # fmt: skip

    histories = [compile_and_fit(True), compile_and_fit(False), compile_and_fit(True)]
    return histories, km.get_weights()


def test_a_second_fit_continues_the_optimizer_unless_compiled_again(client: TestClient) -> None:
    """Keras's optimizer carries on into a second fit (Adam's moments and step count), and a
    compile() before it starts a fresh one: a fit without `compile` is the former, with one the
    latter. Compared with Keras itself from the same initial weights."""
    keras = import_keras()
    keras.utils.set_random_seed(0)
    initial = keras.models.model_from_json(keras_json(PLAIN)).get_weights()
    model = client.post("/v1/models", json={"config": PLAIN, "seed": 1}).json()["id"]
    put = client.put(f"/v1/models/{model}/weights",
                     json={"weights": [w.tolist() for w in initial]})  # fmt: skip
    assert put.status_code == 200, put.text

    def fit(**extra: Any) -> dict[str, list[float]]:
        r = client.post(f"/v1/models/{model}/fit", json={**PLAIN_FIT, **extra})
        assert r.status_code == 202, r.text
        return dict(wait_for(client, r.json()["id"], {"succeeded"})["history"])

    ours_histories = [fit(compile=COMPILE), fit(), fit(compile=COMPILE)]
    theirs_histories, theirs_weights = _keras_three_fits(keras, initial)

    # 36 Adam steps at a high rate amplify roundoff: every value is held to a multiple of
    # Keras's own drift when its initial weights move by one ulp (CONTRIBUTING.md).
    def named(histories: list[Any], final: list[Any]) -> dict[str, Any]:
        return {**{f"fit {i} {k}": v for i, h in enumerate(histories) for k, v in h.items()},
                **{f"weight {i}": w for i, w in enumerate(final)}}  # fmt: skip

    drift = keras_drift(lambda w: named(*_keras_three_fits(keras, w)), initial,
                        baseline=named(theirs_histories, theirs_weights))  # fmt: skip
    assert isinstance(drift, dict)
    with np.load(io.BytesIO(client.get(f"/v1/models/{model}/weights").content)) as npz:
        ours_weights = [npz[f"arr_{i}"] for i in range(len(theirs_weights))]
    assert_within_drift(named(ours_histories, ours_weights),
                        named(theirs_histories, theirs_weights), drift)  # fmt: skip
