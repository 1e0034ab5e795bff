"""A `.keras` file of a Functional model that Keras saved with `training` recorded at its
Dropout and recurrent calls, and with an int32 input, imported and used through the routes
alone: predict and evaluate give Keras's numbers, fit trains it, and the export keeps the
input's dtype."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from tests.e2e.scenario_checks import wait_for

os.environ.setdefault("KERAS_BACKEND", "torch")
OCTET = {"content-type": "application/octet-stream"}
T, VOCAB = 6, 12
RNG = np.random.default_rng(4)
IDS = RNG.integers(0, VOCAB, size=(30, T)).astype(np.int32)
Y = RNG.normal(size=(30, 1)).astype(np.float32)
COMPILE = {"optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.01}}, "loss": "mse",
           "metrics": ["mae"]}  # fmt: skip


def _keras_model() -> Any:
    import keras

    layers = keras.layers
    keras.utils.set_random_seed(1)
    ids = keras.Input((T,), dtype="int32", name="ids")
    h = layers.Embedding(VOCAB, 4, name="emb")(ids)
    h = layers.LSTM(5, return_sequences=True, name="lstm")(h)
    h = layers.Dropout(0.3, name="drop")(h)
    h = layers.GRU(3, name="gru")(h)
    h = layers.Dropout(0.3, name="drop_always")(h, training=True)
    model = keras.Model(ids, layers.Dense(1, name="out")(h))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    return model


def test_a_functional_keras_file_with_recorded_training(client: TestClient, tmp_path: Path) -> None:
    km = _keras_model()
    path = tmp_path / "m.keras"
    km.save(path)
    with zipfile.ZipFile(path) as z:  # what the engine used to refuse is in the file
        nodes = {e["name"]: e["inbound_nodes"] for e in
                 json.loads(z.read("config.json"))["config"]["layers"]}  # fmt: skip
    assert nodes["drop"][0]["kwargs"] == {"training": False}
    assert nodes["drop_always"][0]["kwargs"] == {"training": True}
    r = client.post("/v1/models/import", content=path.read_bytes(), headers=OCTET)
    assert r.status_code == 201, r.text
    model = r.json()
    url = f"/v1/models/{model['id']}"
    assert model["summary"]["total_params"] == km.count_params()
    r = client.post(f"{url}/predict", json={"x": IDS.tolist(), "batch_size": 8})
    assert r.status_code == 200, r.text
    assert np.array_equal(np.array(r.json()["predictions"], np.float32),
                          km.predict(IDS, batch_size=8, verbose=0))  # fmt: skip
    r = client.post(f"{url}/evaluate", json={"x": IDS.tolist(), "y": Y.tolist(), "batch_size": 8})
    assert r.json() == km.evaluate(IDS, Y, batch_size=8, return_dict=True, verbose=0)
    body = {"compile": COMPILE, "x": IDS.tolist(), "y": Y.tolist(), "batch_size": 8, "epochs": 2,
            "seed": 3}  # fmt: skip
    job = client.post(f"{url}/fit", json=body)
    assert job.status_code == 202, job.text
    done = wait_for(client, job.json()["id"], {"succeeded", "failed"})  # type: ignore[arg-type]
    assert done["status"] == "succeeded", done["error"]
    assert sorted(done["history"]) == ["loss", "mae"] and len(done["history"]["loss"]) == 2
    trained = client.post(f"{url}/predict", json={"x": IDS.tolist()}).json()["predictions"]
    assert not np.allclose(trained, km.predict(IDS, verbose=0))
    exported = client.get(f"{url}/model.keras")
    assert exported.status_code == 200
    with zipfile.ZipFile(io.BytesIO(exported.content)) as z:
        layers = json.loads(z.read("config.json"))["config"]["layers"]
    assert layers[0]["config"]["dtype"] == "int32"
