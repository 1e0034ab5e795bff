"""A two-input, two-output Functional model over HTTP on the embedded default: create (summary
lists inputs and outputs), fit with x and y keyed by name and per-output losses and metrics,
evaluate with lists in order, predict keyed by output name, and 422s that name the input."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from tests.e2e.scenario_checks import wait_for


def _tensor(layer: str) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [layer, 0, 0]}}


MODEL = {
    "class_name": "Functional",
    "config": {
        "name": "two_heads",
        "layers": [
            {"class_name": "InputLayer", "name": "a", "config": {"batch_shape": [None, 3]},
             "inbound_nodes": []},
            {"class_name": "InputLayer", "name": "b", "config": {"batch_shape": [None, 2]},
             "inbound_nodes": []},
            {"class_name": "Concatenate", "name": "cat", "config": {},
             "inbound_nodes": [{"args": [[_tensor("a"), _tensor("b")]], "kwargs": {}}]},
            {"class_name": "Dense", "name": "cls", "config": {"units": 1, "activation": "sigmoid"},
             "inbound_nodes": [{"args": [_tensor("cat")], "kwargs": {}}]},
            {"class_name": "Dense", "name": "reg", "config": {"units": 2},
             "inbound_nodes": [{"args": [_tensor("cat")], "kwargs": {}}]},
        ],
        "input_layers": [["a", 0, 0], ["b", 0, 0]],
        "output_layers": [["cls", 0, 0], ["reg", 0, 0]],
    },
}  # fmt: skip

RNG = np.random.default_rng(3)
XA = RNG.normal(size=(40, 3)).round(3).tolist()
XB = RNG.normal(size=(40, 2)).round(3).tolist()
Y_CLS = RNG.integers(0, 2, size=(40, 1)).tolist()
Y_REG = RNG.normal(size=(40, 2)).round(3).tolist()
COMPILE = {"optimizer": "adam", "loss": {"cls": "binary_crossentropy", "reg": "mse"},
           "loss_weights": {"cls": 1.0, "reg": 0.5},
           "metrics": {"cls": ["accuracy"], "reg": ["mae"]}}  # fmt: skip


def test_functional_model_over_http(client: TestClient) -> None:
    r = client.post("/v1/models", json={"config": MODEL, "seed": 1})
    assert r.status_code == 201, r.text
    model = r.json()
    summary = model["summary"]
    assert summary["kind"] == "Functional"
    assert summary["inputs"] == [{"name": "a", "shape": [None, 3], "dtype": "float32"},
                                 {"name": "b", "shape": [None, 2], "dtype": "float32"}]  # fmt: skip
    assert [o["name"] for o in summary["outputs"]] == ["cls", "reg"]
    assert summary["input_shape"] is None and summary["total_params"] == 6 + 12
    url = f"/v1/models/{model['id']}"
    fit = {"compile": COMPILE, "x": {"a": XA, "b": XB}, "y": {"cls": Y_CLS, "reg": Y_REG},
           "epochs": 2, "batch_size": 8, "validation_split": 0.25, "seed": 4}  # fmt: skip
    job = client.post(f"{url}/fit", json=fit)
    assert job.status_code == 202, job.text
    done = wait_for(client, job.json()["id"], {"succeeded", "failed"})  # type: ignore[arg-type]
    assert done["status"] == "succeeded", done
    assert sorted(done["history"]) == sorted(
        f"{p}{k}" for p in ("", "val_")
        for k in ("loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae")
    )  # fmt: skip
    ev = client.post(f"{url}/evaluate", json={"x": [XA, XB], "y": [Y_CLS, Y_REG]})
    assert ev.status_code == 200, ev.text
    assert set(ev.json()) == {"loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"}
    pred = client.post(f"{url}/predict", json={"x": {"a": XA[:5], "b": XB[:5]}})
    assert pred.status_code == 200, pred.text
    out = pred.json()["predictions"]
    assert sorted(out) == ["cls", "reg"]
    assert np.asarray(out["cls"]).shape == (5, 1) and np.asarray(out["reg"]).shape == (5, 2)


def test_functional_input_errors_name_the_input(client: TestClient) -> None:
    model = client.post("/v1/models", json={"config": MODEL, "seed": 1}).json()
    url = f"/v1/models/{model['id']}"
    r = client.post(f"{url}/predict", json={"x": {"a": XA, "c": XB}})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "x", "c"]
    r = client.post(f"{url}/predict", json={"x": {"a": XA, "b": XA}})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "x", "b"]
    bad = {**COMPILE, "loss": ["mse"]}
    r = client.post(f"{url}/evaluate", json={"compile": bad, "x": [XA, XB], "y": [Y_CLS, Y_REG]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][:3] == ["body", "compile", "loss"]
