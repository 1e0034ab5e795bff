"""A model that diverges keeps working, as a Keras model with NaN weights does: its losses are
NaN (null in JSON), never a 500 or a failed job; and a learning rate past float32's range is
refused up front, while a schedule that grows past it trains on (with NaN losses)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from fastapi.testclient import TestClient

from app.engine.losses import BinaryCrossentropy, BinaryFocalCrossentropy
from app.engine.models.model import Model
from app.engine.training import checkpoint
from app.engine.training.compile import CompileSpec
from app.engine.training.trainer import Trainer
from tests.support import scenario

X = scenario.X[::10].tolist()
Y = scenario.Y[::10].tolist()
BCE = {"optimizer": "sgd", "loss": "binary_crossentropy", "metrics": ["accuracy"]}
GROWING = {
    "class_name": "ExponentialDecay",
    "config": {"initial_learning_rate": 0.01, "decay_steps": 1, "decay_rate": 1e30},
}


def _model(client: TestClient, compile_cfg: dict[str, Any]) -> str:
    r = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 1})
    assert r.status_code == 201, r.text
    model_id = str(r.json()["id"])
    assert client.post(f"/v1/models/{model_id}/compile", json=compile_cfg).status_code == 200
    return model_id


def _fit(client: TestClient, model_id: str, **extra: Any) -> dict[str, Any]:
    r = client.post(f"/v1/models/{model_id}/fit",
                    json={"x": X, "y": Y, "epochs": 2, "batch_size": 8, **extra})  # fmt: skip
    assert r.status_code == 202, r.text
    for _ in range(600):
        job: dict[str, Any] = client.get(f"/v1/jobs/{r.json()['id']}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError("the job did not end")


def test_a_model_with_nan_weights_keeps_working(client: TestClient) -> None:
    model_id = _model(client, BCE)
    url = f"/v1/models/{model_id}"
    # A class weight past float32's range makes the loss infinite and the weights NaN.
    r = client.post(f"{url}/train_on_batch", json={"x": X, "y": Y, "class_weight": {"0": 1e300}})
    assert r.status_code == 200 and r.json()["loss"] is None, r.text
    for route, body in (("train_on_batch", {"x": X, "y": Y}), ("test_on_batch", {"x": X, "y": Y}),
                        ("evaluate", {"x": X, "y": Y}), ("predict", {"x": X[:2]})):  # fmt: skip
        r = client.post(f"{url}/{route}", json=body)
        assert r.status_code == 200, (route, r.text)
    assert r.json()["predictions"] == [[None], [None]]
    job = _fit(client, model_id)
    assert job["status"] == "succeeded" and job["history"]["loss"] == [None, None], job


def test_a_learning_rate_past_float32_is_refused(client: TestClient) -> None:
    model_id = _model(client, BCE)
    for lr, loc in ((1e39, ["learning_rate"]),
                    ({"class_name": "CosineDecay", "config": {"initial_learning_rate": 1e39,
                                                              "decay_steps": 3}},
                     ["learning_rate", "config", "initial_learning_rate"])):  # fmt: skip
        optimizer = {"class_name": "SGD", "config": {"learning_rate": lr}}
        compile_cfg = {"optimizer": optimizer, "loss": "mse"}
        r = client.post(f"/v1/models/{model_id}/train_on_batch",
                        json={"x": X, "y": Y, "compile": compile_cfg})  # fmt: skip
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "compile", "optimizer", "config", *loc]


def test_a_schedule_that_grows_past_float32_trains_on(client: TestClient) -> None:
    compile_cfg = {"optimizer": {"class_name": "SGD", "config": {"learning_rate": GROWING}},
                   "loss": "mse"}  # fmt: skip
    model_id = _model(client, compile_cfg)
    for _ in range(3):  # the rate is infinite from the second step on
        r = client.post(f"/v1/models/{model_id}/train_on_batch", json={"x": X, "y": Y})
        assert r.status_code == 200, r.text
    job = _fit(client, _model(client, compile_cfg))
    assert job["status"] == "succeeded", job


def test_a_checkpoint_holds_an_infinite_scheduled_rate() -> None:
    spec = CompileSpec.parse(
        {"optimizer": {"class_name": "SGD", "config": {"learning_rate": GROWING}}, "loss": "mse"}
    )
    trainer = Trainer(Model.from_config(scenario.MODEL, seed=1), spec, device=None)
    trainer.optimizer.load_state_dict({}, {"class_name": "SGD", "steps": 50, "iterations": 50})
    assert trainer.optimizer.learning_rate == float("inf")
    tensors, meta = checkpoint.from_bytes(checkpoint.to_bytes(*trainer.state()))
    again = Trainer(Model.from_config(scenario.MODEL, seed=1), spec, device=None)
    again.load_state(tensors, meta)
    assert again.optimizer.steps == 50 and again.optimizer.learning_rate == float("inf")


def test_binary_crossentropy_of_a_nan_probability_is_nan() -> None:
    """torch's kernel refuses NaN (Keras's torch backend raises with it); the loss is NaN there,
    as on Keras's other backends, and the other elements are what torch's kernel gives."""
    y_true = torch.tensor([[0.0], [1.0], [1.0]])
    y_pred = torch.tensor([[0.3], [float("nan")], [0.8]])
    for loss in (BinaryCrossentropy(), BinaryFocalCrossentropy()):
        got = loss.call(y_true, y_pred)  # per sample
        assert torch.isnan(got[1])
        finite = loss.call(y_true[[0, 2]], y_pred[[0, 2]])
        np.testing.assert_array_equal(got[[0, 2]].numpy(), finite.numpy())
