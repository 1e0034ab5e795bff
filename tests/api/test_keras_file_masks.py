"""A `.keras` file of the standard text model written with the Functional API (int32 ids ->
Embedding(mask_zero=True) -> LSTM -> Dense), whose mask Keras saves as a `NotEqual` op node
passed as the LSTM call's `mask`, imported and used through the routes alone: the summary lists
the layers without the op, predict and evaluate give Keras's numbers on padded ids, and the
export, op node included, opens in Keras and predicts the same. An op Keras does not write for
masks is a 422 naming the node."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

os.environ.setdefault("KERAS_BACKEND", "torch")
OCTET = {"content-type": "application/octet-stream"}
T, VOCAB = 6, 15
RNG = np.random.default_rng(8)
IDS = RNG.integers(1, VOCAB, size=(30, T)).astype(np.int32)
for _i, _n in enumerate(RNG.integers(1, T + 1, size=30)):
    IDS[_i, _n:] = 0  # padding the mask hides
Y = RNG.integers(0, 2, size=(30, 1)).astype(np.float32)


def _keras_model() -> Any:
    import keras

    layers = keras.layers
    keras.utils.set_random_seed(2)
    i = keras.Input(shape=(T,), dtype="int32")
    e = layers.Embedding(VOCAB, 4, mask_zero=True)(i)
    h = layers.LSTM(5)(e)
    model = keras.Model(i, layers.Dense(1, activation="sigmoid")(h))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy",
                  metrics=["accuracy"])  # fmt: skip
    return model


def _layers(archive: bytes) -> list[dict[str, Any]]:
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        layers: list[dict[str, Any]] = json.loads(z.read("config.json"))["config"]["layers"]
        return layers


def test_the_functional_text_model_from_a_keras_file(client: TestClient, tmp_path: Path) -> None:
    import keras

    km = _keras_model()
    path = tmp_path / "text.keras"
    km.save(path)
    (op,) = [e for e in _layers(path.read_bytes()) if e["module"] == "keras.src.ops.numpy"]
    assert op["class_name"] == "NotEqual"
    r = client.post("/v1/models/import", content=path.read_bytes(), headers=OCTET)
    assert r.status_code == 201, r.text
    model = r.json()
    url = f"/v1/models/{model['id']}"
    summary = model["summary"]
    assert [row["name"] for row in summary["layers"]] == [layer.name for layer in km.layers[1:]]
    assert summary["total_params"] == km.count_params()
    want = km.predict(IDS, batch_size=8, verbose=0)
    r = client.post(f"{url}/predict", json={"x": IDS.tolist(), "batch_size": 8})
    assert r.status_code == 200, r.text
    assert np.array_equal(np.array(r.json()["predictions"], np.float32), want)
    r = client.post(f"{url}/evaluate", json={"x": IDS.tolist(), "y": Y.tolist(), "batch_size": 8})
    assert r.json() == km.evaluate(IDS, Y, batch_size=8, return_dict=True, verbose=0)
    exported = client.get(f"{url}/model.keras")
    assert exported.status_code == 200
    (back,) = [e for e in _layers(exported.content) if e["module"] == "keras.src.ops.numpy"]
    assert back == op
    path = tmp_path / "ours.keras"
    path.write_bytes(exported.content)
    assert np.array_equal(keras.saving.load_model(path).predict(IDS, batch_size=8, verbose=0), want)


def test_an_op_keras_does_not_write_for_masks_is_refused(client: TestClient) -> None:
    config = json.loads(_keras_model().to_json())
    index, op = next((i, e) for i, e in enumerate(config["config"]["layers"])
                     if e["class_name"] == "NotEqual")  # fmt: skip
    op.update(class_name="Sin", registered_name="Sin")
    r = client.post("/v1/models", json={"config": config})
    assert r.status_code == 422
    error = r.json()["detail"][0]
    assert error["loc"] == ["body", "config", "config", "layers", index, "class_name"]
    assert f"unknown Keras op 'Sin' (node {op['name']!r})" in error["msg"]
