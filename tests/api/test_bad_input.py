"""Bad input gets a 422 that names the field and the reason, and nothing is written."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import scenario


def _model(index: int, key: str, value: Any) -> dict[str, Any]:
    config = copy.deepcopy(scenario.MODEL)
    config["config"]["layers"][index]["config"][key] = value
    return config


def _loc(r: Any) -> list[Any]:
    assert r.status_code == 422, r.text
    return r.json()["detail"][0]["loc"]


def _msg(r: Any) -> str:
    return str(r.json()["detail"][0]["msg"])


def test_unknown_layer(client: TestClient) -> None:
    config = copy.deepcopy(scenario.MODEL)
    config["config"]["layers"][2]["class_name"] = "Dense2"
    r = client.post("/v1/models", json={"config": config})
    assert _loc(r) == ["body", "config", "config", "layers", 2, "class_name"]
    assert "unknown layer 'Dense2'" in _msg(r)
    assert client.get("/v1/models").json()["total"] == 0


def test_negative_units(client: TestClient) -> None:
    r = client.post("/v1/models", json={"config": _model(2, "units", -3)})
    assert _loc(r) == ["body", "config", "config", "layers", 2, "config", "units"]
    assert ">= 1" in _msg(r)
    assert client.get("/v1/models").json()["total"] == 0


@pytest.mark.parametrize(
    ("mutate", "loc_tail", "text"),
    [
        (lambda b: b.update(y=b["y"][:-1]), ["y"], "same length"),
        (lambda b: b["compile"].update(loss="hinge_loss"), ["compile", "loss"], "unknown loss"),
        (lambda b: b["compile"].update(optimizer="adamx"), ["compile", "optimizer"], "unknown"),
        (lambda b: b["compile"].update(metrics=["acuracy"]), ["compile", "metrics", 0], "unknown"),
        (lambda b: b.update(y=[2.0] * 500), ["y"], ""),
        (lambda b: b.update(validation_freq=0), ["validation_freq"], ">= 1"),
        (lambda b: b.update(validation_freq=[1, -2]), ["validation_freq"], "1-based"),
        (lambda b: b.update(validation_split=0.999, validation_data=None, callbacks=[]),
         ["validation_split"], "both must be"),
        (lambda b: b.update(x=[[1.0, 2.0]] * 500), ["x"], "expected shape"),
        (lambda b: b.update(x="abc"), ["x"], "numeric"),
        (lambda b: b.update(sample_weight=[-1.0] * 500), ["sample_weight"], "negative"),
        (lambda b: b.update(callbacks=[{"class_name": "Nope"}]), ["callbacks", 0, "class_name"],
         "unknown callback"),
        (lambda b: b.update(callbacks=[{"class_name": "ThresholdStopping",
                                        "config": {"monitor": "val_acc", "threshold": 1}}]),
         ["callbacks", 0, "config", "monitor"], "not among the logs"),
    ],
)  # fmt: skip
def test_bad_fit_requests(client: TestClient, mutate: Any, loc_tail: list[Any], text: str) -> None:
    model = client.post("/v1/models", json={"config": scenario.MODEL}).json()
    body = copy.deepcopy(scenario.fit_body(epochs=2))
    mutate(body)
    r = client.post(f"/v1/models/{model['id']}/fit", json=body)
    loc = _loc(r)
    assert loc[0] == "body" and loc[-len(loc_tail) :] == loc_tail, loc
    assert text in _msg(r)
    assert client.get("/v1/jobs").json()["items"] == []


def test_nan_in_array_and_in_hyperparameter(client: TestClient) -> None:
    model = client.post("/v1/models", json={"config": scenario.MODEL}).json()
    body = scenario.fit_body(epochs=2)
    x = body["x"]
    x[7] = [float("nan")]
    text = json.dumps({**body, "x": x})
    r = client.post(f"/v1/models/{model['id']}/fit", content=text,
                    headers={"content-type": "application/json"})  # fmt: skip
    assert _loc(r)[:3] == ["body", "x", 7]
    assert "finite" in _msg(r)

    body = scenario.fit_body(epochs=2)
    body["compile"] = {
        **body["compile"],
        "optimizer": {"class_name": "Adam", "config": {"learning_rate": "NaN"}},
    }
    text = json.dumps(body).replace('"NaN"', "NaN")
    r = client.post(f"/v1/models/{model['id']}/fit", content=text,
                    headers={"content-type": "application/json"})  # fmt: skip
    assert _loc(r)[-1] == "learning_rate"
    assert client.get("/v1/jobs").json()["items"] == []


def test_empty_and_malformed_bodies(client: TestClient) -> None:
    r = client.post("/v1/models")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][0] == "body"
    r = client.post("/v1/models", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 422
    model = client.post("/v1/models", json={"config": scenario.MODEL}).json()
    r = client.post(f"/v1/models/{model['id']}/fit", json={})
    assert r.status_code == 422
    assert {tuple(e["loc"]) for e in r.json()["detail"]} >= {("body", "x"), ("body", "y")}


def test_unknown_fields_and_limits(client: TestClient) -> None:
    model = client.post("/v1/models", json={"config": scenario.MODEL}).json()
    body = scenario.fit_body(epochs=2, class_weights={"0": 1})
    assert _loc(client.post(f"/v1/models/{model['id']}/fit", json=body)) == [
        "body",
        "class_weights",
    ]
    body = scenario.fit_body(epochs=10**9)
    assert _loc(client.post(f"/v1/models/{model['id']}/fit", json=body)) == ["body", "epochs"]
    big = b'{"config": "' + b"x" * 3_000_000 + b'"}'
    r = client.post("/v1/models", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_custom_objects_are_refused(client: TestClient) -> None:
    config = copy.deepcopy(scenario.MODEL)
    config["config"]["layers"][2]["module"] = "os"
    r = client.post("/v1/models", json={"config": config})
    assert _loc(r)[-1] == "module"
    config = copy.deepcopy(scenario.MODEL)
    config["config"]["layers"][2]["class_name"] = "Lambda"
    assert "Python code" in _msg(client.post("/v1/models", json={"config": config}))


def test_unknown_ids_are_404(client: TestClient) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    assert client.get(f"/v1/models/{missing}").status_code == 404
    assert client.get(f"/v1/jobs/{missing}").status_code == 404
    assert client.post(f"/v1/jobs/{missing}/cancel").status_code == 404
    assert client.get(f"/v1/jobs/{missing}/events").status_code == 404
    assert client.get("/v1/models/not-a-uuid").status_code == 422


@pytest.mark.parametrize(
    ("body_text", "loc"),
    [
        ('{"config": {"class_name": "Sequential", "config": {"name": "a\\u0000b", "layers": []}}}',
         ["body", "config", "config", "name"]),
        ('{"config": {"class_name": "Sequential", "config": {"layers": [], "x": NaN}}}',
         ["body", "config", "config", "x"]),
    ],
)  # fmt: skip
def test_stored_json_must_be_finite_and_nul_free(
    client: TestClient, body_text: str, loc: list[Any]
) -> None:
    r = client.post("/v1/models", content=body_text, headers={"content-type": "application/json"})
    assert _loc(r) == loc
    assert client.get("/v1/models").json()["total"] == 0


def test_numbers_too_large_for_float32_are_422(client: TestClient) -> None:
    model = client.post("/v1/models", json={"config": scenario.MODEL}).json()
    huge = "1" + "0" * 400
    body = json.dumps(scenario.fit_body(epochs=2))
    r = client.post(f"/v1/models/{model['id']}/fit",
                    content=body.replace('"learning_rate": 0.1', f'"learning_rate": {huge}'),
                    headers={"content-type": "application/json"})  # fmt: skip
    assert _loc(r)[-1] == "learning_rate"
    r = client.post(f"/v1/models/{model['id']}/predict", content=f'{{"x": [[{huge}]]}}',
                    headers={"content-type": "application/json"})  # fmt: skip
    assert _loc(r)[:2] == ["body", "x"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("batch_size", True), ("validation_freq", []), ("validation_freq", [True]), ("epochs", 2.5)],
)
def test_strict_integers(client: TestClient, field: str, value: Any) -> None:
    model = client.post("/v1/models", json={"config": scenario.MODEL}).json()
    body = {**scenario.fit_body(epochs=2), field: value}
    r = client.post(f"/v1/models/{model['id']}/fit", json=body)
    assert _loc(r)[:2] == ["body", field]


def test_every_error_has_the_same_shape(client: TestClient) -> None:
    for r in (client.get("/v1/nothing"), client.put("/v1/models")):
        assert r.status_code in (404, 405)
        assert r.json()["detail"][0]["type"] in ("not_found", "method_not_allowed")

    def chunks() -> Any:
        yield b'{"config": "'
        for _ in range(30):
            yield b"x" * 100_000
        yield b'"}'

    r = client.post("/v1/models", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json()["detail"][0]["type"] == "payload_too_large"
