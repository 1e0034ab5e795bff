"""Weights in and out in Keras's get_weights() order, checked against Keras itself."""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from tests.e2e.scenario_checks import wait_for
from tests.support import scenario
from tests.support.keras_json import keras_json

os.environ.setdefault("KERAS_BACKEND", "torch")


def _npz(arrays: list[Any], **extra: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *arrays, **extra)
    return buffer.getvalue()


def _model(client: TestClient) -> str:
    return str(client.post("/v1/models", json={"config": scenario.MODEL, "seed": 1}).json()["id"])


def _predict(client: TestClient, model_id: str) -> np.ndarray:
    r = client.post(f"/v1/models/{model_id}/predict", json={"x": scenario.X.tolist()})
    return np.asarray(r.json()["predictions"], dtype=np.float32)


def test_weights_round_trip_with_keras(client: TestClient) -> None:
    import keras

    km = keras.models.model_from_json(keras_json(scenario.MODEL))
    rng = np.random.default_rng(0)
    km.set_weights([rng.normal(size=w.shape).astype(w.dtype) if w.ndim else w
                    for w in km.get_weights()])  # fmt: skip
    model_id = _model(client)
    npz = _npz(km.get_weights())
    r = client.put(f"/v1/models/{model_id}/weights", content=npz,
                   headers={"content-type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["weights"] == "uploaded"
    np.testing.assert_allclose(_predict(client, model_id), km.predict(scenario.X, verbose=0),
                               rtol=1e-6, atol=1e-7)  # fmt: skip
    r = client.get(f"/v1/models/{model_id}/weights")
    assert r.headers["content-type"] == "application/octet-stream"
    with np.load(io.BytesIO(r.content), allow_pickle=False) as back:
        for i, w in enumerate(km.get_weights()):
            np.testing.assert_array_equal(back[f"arr_{i}"], w)


def test_json_weights(client: TestClient) -> None:
    model_id = _model(client)
    with np.load(io.BytesIO(client.get(f"/v1/models/{model_id}/weights").content)) as npz:
        arrays = [npz[f"arr_{i}"] * 2 for i in range(len(npz.files))]
    r = client.put(f"/v1/models/{model_id}/weights", json={"weights": [a.tolist() for a in arrays]})
    assert r.status_code == 200, r.text
    with np.load(io.BytesIO(client.get(f"/v1/models/{model_id}/weights").content)) as npz:
        assert all(np.array_equal(npz[f"arr_{i}"], a) for i, a in enumerate(arrays))


def test_bad_uploads_change_nothing(client: TestClient) -> None:
    model_id = _model(client)
    before = _predict(client, model_id)
    original = client.get(f"/v1/models/{model_id}/weights").content
    with np.load(io.BytesIO(original)) as npz:
        good = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    wrong_shape = [*good[:-1], np.zeros((2,), dtype=np.float32)]
    cases = [
        (_npz(wrong_shape), ["body", "weights", 6], "expected shape"),
        (_npz(good[:-1]), ["body", "weights"], "expected 7 arrays"),
        (_npz([np.array([{"a": 1}], dtype=object)]), ["body", "arr_0"], "not a readable"),
        (_npz(good, extra=np.zeros(1)), ["body"], "arr_0, arr_1"),
        (b"not a zip", ["body"], "not a readable"),
    ]
    for data, loc, text in cases:
        r = client.put(f"/v1/models/{model_id}/weights", content=data,
                       headers={"content-type": "application/octet-stream"})  # fmt: skip
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == loc and text in r.json()["detail"][0]["msg"]
    nan = [a.tolist() for a in good]
    nan[3] = [[float("nan")]]
    r = client.put(f"/v1/models/{model_id}/weights",
                   content=str({"weights": nan}).replace("nan", "NaN").replace("'", '"'),
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 422 and "finite" in r.json()["detail"][0]["msg"]
    np.testing.assert_array_equal(_predict(client, model_id), before)
    assert client.get(f"/v1/models/{model_id}").json()["weights"] == "initial"


def test_weights_cannot_change_while_training(client: TestClient) -> None:
    model_id = _model(client)
    job = client.post(f"/v1/models/{model_id}/fit",
                      json=scenario.fit_body(epochs=10_000, callbacks=[],
                                             batch_size=1)).json()  # fmt: skip
    original = client.get(f"/v1/models/{model_id}/weights").content
    r = client.put(f"/v1/models/{model_id}/weights", content=original,
                   headers={"content-type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 409
    client.post(f"/v1/jobs/{job['id']}/cancel")
    wait_for(client, job["id"], {"cancelled"})  # type: ignore[arg-type]
