"""POST /v1/models/{id}/adapt and fit's `adapt` option, checked against Keras's own adapt."""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.e2e.scenario_checks import wait_for
from tests.support import scenario
from tests.support.keras_json import keras_json

os.environ.setdefault("KERAS_BACKEND", "torch")

X = scenario.X * 0.5 + 3.0  # adapt data unlike the fit's, so the two are told apart


def _model(client: TestClient) -> str:
    return str(client.post("/v1/models", json={"config": scenario.MODEL, "seed": 1}).json()["id"])


def _weights(client: TestClient, model_id: str) -> list[np.ndarray]:
    with np.load(io.BytesIO(client.get(f"/v1/models/{model_id}/weights").content)) as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]


def _predict(client: TestClient, model_id: str) -> np.ndarray:
    r = client.post(f"/v1/models/{model_id}/predict", json={"x": scenario.X.tolist()})
    return np.asarray(r.json()["predictions"], dtype=np.float32)


def test_adapt_gives_kerass_numbers(client: TestClient) -> None:
    import keras

    model_id = _model(client)
    km = keras.models.model_from_json(keras_json(scenario.MODEL))
    km.set_weights(_weights(client, model_id))
    km.layers[0].adapt(X)
    r = client.post(f"/v1/models/{model_id}/adapt", json={"x": X.tolist(), "batch_size": 64})
    assert r.status_code == 200, r.text
    assert r.json()["adapted"] == ["normalization"]
    assert r.json()["model"]["weights"] == "uploaded"
    for got, want in zip(_weights(client, model_id), km.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=0)
    np.testing.assert_allclose(_predict(client, model_id), km.predict(scenario.X, verbose=0),
                               rtol=1e-6, atol=1e-7)  # fmt: skip
    # Named explicitly, an adapted layer is adapted again (on new data).
    r = client.post(f"/v1/models/{model_id}/adapt",
                    json={"x": scenario.X.tolist(), "layers": ["normalization"]})  # fmt: skip
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(_weights(client, model_id)[0], np.mean(scenario.X, axis=0))


@pytest.mark.parametrize(
    ("body", "loc", "text"),
    [
        ({"x": X.tolist(), "layers": ["dense"]}, ["body", "layers", 0], "is a Dense"),
        ({"x": X.tolist(), "layers": ["nope"]}, ["body", "layers", 0], "no layer named"),
        ({"x": X.tolist(), "layers": []}, ["body", "layers"], "at least 1"),
        ({"x": [[1.0, 2.0]]}, ["body", "x"], "expected shape"),
        ({"x": [[1.0], ["a"]]}, ["body", "x"], "numbers"),
        ({"x": [[3e38], [3e38]]}, ["body", "x"], "not finite"),
        ({"x": X.tolist(), "batch_size": 0}, ["body", "batch_size"], "greater than or equal"),
        ({"x": X.tolist(), "epochs": 2}, ["body", "epochs"], "not permitted"),
        ({}, ["body", "x"], "required"),
    ],
)
def test_bad_requests_name_the_field_and_change_nothing(
    client: TestClient, body: dict[str, Any], loc: list[Any], text: str
) -> None:
    model_id = _model(client)
    before = _weights(client, model_id)
    r = client.post(f"/v1/models/{model_id}/adapt", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == loc and text in detail["msg"], detail
    for got, want in zip(_weights(client, model_id), before, strict=True):
        np.testing.assert_array_equal(got, want)
    assert client.get(f"/v1/models/{model_id}").json()["weights"] == "initial"


def test_unknown_model_is_a_404(client: TestClient) -> None:
    r = client.post("/v1/models/00000000-0000-0000-0000-000000000000/adapt", json={"x": [[1.0]]})
    assert r.status_code == 404


def test_no_adapt_while_training(client: TestClient) -> None:
    model_id = _model(client)
    job = client.post(f"/v1/models/{model_id}/fit",
                      json=scenario.fit_body(epochs=10_000, callbacks=[],
                                             batch_size=1)).json()  # fmt: skip
    r = client.post(f"/v1/models/{model_id}/adapt", json={"x": X.tolist()})
    assert r.status_code == 409, r.text
    assert r.json()["detail"][0]["loc"] == ["path", "model_id"]
    client.post(f"/v1/jobs/{job['id']}/cancel")
    wait_for(client, job["id"], {"cancelled"})  # type: ignore[arg-type]


def _fit(client: TestClient, model_id: str, **extra: Any) -> dict[str, Any]:
    body = {**scenario.fit_body(epochs=2, callbacks=[]), "validation_data": None, **extra}
    r = client.post(f"/v1/models/{model_id}/fit", json=body)
    assert r.status_code == 202, r.text
    job: dict[str, Any] = wait_for(client, r.json()["id"], {"succeeded", "failed"})  # type: ignore[arg-type]
    assert job["status"] == "succeeded", job
    return job


def test_fit_with_adapt_adapts_on_the_training_part(client: TestClient) -> None:
    model_id = _model(client)
    _fit(client, model_id, adapt=True, validation_split=0.2)
    mean, variance, count = _weights(client, model_id)[:3]
    train = scenario.X[:400]  # Keras's validation_split keeps the first 80% for training
    np.testing.assert_array_equal(mean, np.mean(train, axis=0))
    np.testing.assert_array_equal(variance, np.var(train, axis=0))
    assert count == 0


def test_fit_with_adapt_keeps_adapted_layers_and_default_is_off(client: TestClient) -> None:
    model_id = _model(client)
    _fit(client, model_id)  # without adapt the layer stays the identity
    mean, variance = _weights(client, model_id)[:2]
    assert np.all(mean == 0) and np.all(variance == 1)
    assert client.post(f"/v1/models/{model_id}/adapt", json={"x": X.tolist()}).status_code == 200
    _fit(client, model_id, adapt=True)  # adapted already: not unadapted, kept as it is
    np.testing.assert_array_equal(_weights(client, model_id)[0], np.mean(X, axis=0))
