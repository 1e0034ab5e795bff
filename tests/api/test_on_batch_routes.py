"""POST /compile, the *_on_batch routes and the checkpoint selector over HTTP, on the real
Postgres (row locks) with the in-process executor. Each result is compared with the engine run
directly on the same weights and batches; the engine itself is compared with Keras in
tests/engine/test_on_batch_vs_keras.py."""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.engine.models.model import Model
from app.engine.training import on_batch
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from app.main import create_app
from tests.api.conftest import serve
from tests.e2e.scenario_checks import wait_for
from tests.support import scenario

SEED = 11
X = scenario.X[::5]
Y = scenario.Y[::5]
ADAM = {"optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.05}},
        "loss": "binary_crossentropy", "metrics": ["accuracy"]}  # fmt: skip
SGD = {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9}},
       "loss": "binary_crossentropy", "metrics": ["accuracy"]}  # fmt: skip
PARTS = [slice(0, 30), slice(30, 100), slice(10, 20)]
RTOL, ATOL = 1e-6, 1e-7


@pytest.fixture
def client(pg_url: str, tmp_path: Path) -> Iterator[TestClient]:
    """The app on the test Postgres database, checkpointing at every epoch end."""
    with serve(tmp_path, pg_url) as c:
        yield c


def _model(client: TestClient, compile_cfg: dict[str, Any] | None = None) -> str:
    r = client.post("/v1/models", json={"config": scenario.MODEL, "seed": SEED})
    assert r.status_code == 201, r.text
    model_id = str(r.json()["id"])
    if compile_cfg is not None:
        r = client.post(f"/v1/models/{model_id}/compile", json=compile_cfg)
        assert r.status_code == 200, r.text
    return model_id


def _trainer(compile_cfg: dict[str, Any]) -> Trainer:
    """The engine on the model's seeded weights: what the service must reproduce."""
    model = Model.from_config(scenario.MODEL, seed=SEED)
    return Trainer(model, CompileSpec.parse(compile_cfg), device=None)


def _batch(part: slice, **extra: Any) -> dict[str, Any]:
    return {"x": X[part].tolist(), "y": Y[part].tolist(), **extra}


def _weights(client: TestClient, model_id: str) -> list[np.ndarray]:
    r = client.get(f"/v1/models/{model_id}/weights")
    with np.load(io.BytesIO(r.content)) as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]


def _same(logs: dict[str, Any], expected: dict[str, float]) -> None:
    assert sorted(logs) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(logs[key], value, rtol=RTOL, atol=ATOL, err_msg=key)


def _same_weights(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def _refused(r: Any, status: int, loc: list[Any], words: str = "") -> None:
    assert r.status_code == status, r.text
    item = r.json()["detail"][0]
    assert item["loc"] == loc and words in item["msg"], item


def _fit(client: TestClient, model_id: str, epochs: int, **extra: Any) -> dict[str, Any]:
    body = {"x": X.tolist(), "y": Y.tolist(), "batch_size": 16, "epochs": epochs,
            "shuffle": False, **extra}  # fmt: skip
    r = client.post(f"/v1/models/{model_id}/fit", json=body)
    assert r.status_code == 202, r.text
    return wait_for(client, r.json()["id"], {"succeeded", "failed"})  # type: ignore[arg-type]


def test_compile_stores_the_spec_and_fit_evaluate_use_it(client: TestClient) -> None:
    model_id = _model(client)
    r = client.post(f"/v1/models/{model_id}/compile", json={**ADAM, "jit_compile": "auto"})
    assert r.status_code == 200, r.text
    stored = r.json()["compile"]
    assert stored == CompileSpec.parse(ADAM).to_config()
    assert client.get(f"/v1/models/{model_id}").json()["compile"] == stored
    job = _fit(client, model_id, 2, validation_data={"x": X.tolist(), "y": Y.tolist()})
    assert job["status"] == "succeeded", job
    assert set(job["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    r = client.post(f"/v1/models/{model_id}/evaluate",
                    json={"x": X.tolist(), "y": Y.tolist(), "batch_size": 16})  # fmt: skip
    assert r.json() == {"loss": job["history"]["val_loss"][-1],
                        "accuracy": job["history"]["val_accuracy"][-1]}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({"loss": ["mse", "mse", "mse"]}, ["body", "loss"], "has 3 losses"),
        ({"loss": "mse", "metrics": ["acuracy"]}, ["body", "metrics", 0], "unknown metric"),
        ({"loss": "mse", "loss_weights": [1.0, 2.0]}, ["body", "loss_weights"], "2 weights"),
        ({"loss": {"nope": "mse"}}, ["body", "loss", "nope"], "not an output"),
        ({"loss": "mse", "optimizer": "adamm"}, ["body", "optimizer"], ""),
        ({"loss": "mse", "dtype_policy": "float8"}, ["body", "dtype_policy"], "must be one of"),
        ({"loss": "mse", "lose": "mse"}, ["body", "lose"], ""),
    ],
)
def test_a_bad_compile_is_refused_and_nothing_stored(
    client: TestClient, body: dict[str, Any], loc: list[Any], words: str
) -> None:
    model_id = _model(client, SGD)
    before = client.get(f"/v1/models/{model_id}").json()
    _refused(client.post(f"/v1/models/{model_id}/compile", json=body), 422, loc, words)
    assert client.get(f"/v1/models/{model_id}").json() == before


def test_a_nan_in_a_compile_is_refused(client: TestClient) -> None:
    model_id = _model(client)
    body = json.dumps({**SGD, "loss_weights": "NaN"}).replace('"NaN"', "NaN")
    r = client.post(f"/v1/models/{model_id}/compile", content=body,
                    headers={"content-type": "application/json"})  # fmt: skip
    _refused(r, 422, ["body", "loss_weights"], "finite")
    assert client.get(f"/v1/models/{model_id}").json()["compile"] is None
    _refused(client.post(f"/v1/models/{uuid.uuid4()}/compile", json=SGD), 404,
             ["path", "model_id"])  # fmt: skip


def test_repeated_train_on_batch_continues_the_optimizer(client: TestClient) -> None:
    model_id = _model(client, ADAM)
    trainer = _trainer(ADAM)
    for part in PARTS:
        r = client.post(f"/v1/models/{model_id}/train_on_batch", json=_batch(part))
        assert r.status_code == 200, r.text
        _same(r.json(), on_batch.train_on_batch(trainer, X[part], Y[part]))
    _same_weights(_weights(client, model_id), trainer.model.get_weights())
    model = client.get(f"/v1/models/{model_id}").json()
    assert (
        model["weights"] == "on_batch" and model["compile"] == CompileSpec.parse(ADAM).to_config()
    )
    # test_on_batch and predict_on_batch read the new weights and change nothing.
    r = client.post(f"/v1/models/{model_id}/test_on_batch", json=_batch(slice(None)))
    assert r.status_code == 200, r.text
    _same(r.json(), on_batch.test_on_batch(trainer, X, Y))
    r = client.post(f"/v1/models/{model_id}/predict_on_batch", json={"x": X[:9].tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["predictions"],
                               on_batch.predict_on_batch(trainer.model, X[:9]),
                               rtol=RTOL, atol=ATOL)  # fmt: skip
    assert client.get(f"/v1/models/{model_id}").json() == model


def test_compile_resets_the_optimizer_and_put_weights_keeps_it(client: TestClient) -> None:
    model_id = _model(client, SGD)
    trainer = _trainer(SGD)
    for part in PARTS[:2]:
        client.post(f"/v1/models/{model_id}/train_on_batch", json=_batch(part))
        on_batch.train_on_batch(trainer, X[part], Y[part])
    # Keras's set_weights leaves the optimizer alone: the momentum carries on.
    halved = [w * 0.5 for w in trainer.model.get_weights()]
    r = client.put(f"/v1/models/{model_id}/weights", json={"weights": [w.tolist() for w in halved]})
    assert r.status_code == 200, r.text
    trainer.model.set_weights(halved)
    r = client.post(f"/v1/models/{model_id}/train_on_batch", json=_batch(PARTS[2]))
    _same(r.json(), on_batch.train_on_batch(trainer, X[PARTS[2]], Y[PARTS[2]]))
    # Compiling again, even with the same spec, starts a fresh optimizer from these weights.
    r = client.post(f"/v1/models/{model_id}/compile", json=SGD)
    assert r.status_code == 200 and r.json()["weights"] == "on_batch", r.text
    fresh = _trainer(SGD)
    fresh.model.set_weights(trainer.model.get_weights())
    r = client.post(f"/v1/models/{model_id}/train_on_batch", json=_batch(PARTS[0]))
    _same(r.json(), on_batch.train_on_batch(fresh, X[PARTS[0]], Y[PARTS[0]]))
    _same_weights(_weights(client, model_id), fresh.model.get_weights())
    # A compile override other than the stored spec is a recompile too, and is stored.
    trainer = _trainer(ADAM)
    trainer.model.set_weights(fresh.model.get_weights())
    r = client.post(f"/v1/models/{model_id}/train_on_batch", json=_batch(PARTS[1], compile=ADAM))
    _same(r.json(), on_batch.train_on_batch(trainer, X[PARTS[1]], Y[PARTS[1]]))
    r = client.post(f"/v1/models/{model_id}/train_on_batch", json=_batch(PARTS[2]))
    _same(r.json(), on_batch.train_on_batch(trainer, X[PARTS[2]], Y[PARTS[2]]))


def test_train_on_batch_with_a_compile_spec_starts_a_fresh_optimizer(client: TestClient) -> None:
    """As a fit with `compile` does (compile() then train_on_batch in Keras), even when the
    spec is the one the model's optimizer state was made under."""
    model_id = _model(client, SGD)
    trainer = _trainer(SGD)
    r = client.post(f"/v1/models/{model_id}/train_on_batch", json=_batch(PARTS[0]))
    assert r.status_code == 200, r.text
    on_batch.train_on_batch(trainer, X[PARTS[0]], Y[PARTS[0]])
    fresh = _trainer(SGD)  # no momentum yet
    fresh.model.set_weights(trainer.model.get_weights())
    r = client.post(f"/v1/models/{model_id}/train_on_batch", json=_batch(PARTS[1], compile=SGD))
    assert r.status_code == 200, r.text
    on_batch.train_on_batch(fresh, X[PARTS[1]], Y[PARTS[1]])
    _same_weights(_weights(client, model_id), fresh.model.get_weights())


def test_train_on_batch_after_a_fit_continues_the_fits_optimizer(client: TestClient) -> None:
    model_id = _model(client)
    job = _fit(client, model_id, 2, compile=ADAM)
    assert job["status"] == "succeeded", job
    trainer = _trainer(ADAM)
    trainer.fit(X, Y, args=FitArgs(batch_size=16, epochs=2, shuffle=False))
    r = client.post(f"/v1/models/{model_id}/train_on_batch", json=_batch(PARTS[0]))
    assert r.status_code == 200, r.text
    _same(r.json(), on_batch.train_on_batch(trainer, X[PARTS[0]], Y[PARTS[0]]))
    assert trainer.optimizer.iterations == 2 * 7 + 1
    _same_weights(_weights(client, model_id), trainer.model.get_weights())


def test_checkpoint_selectors(client: TestClient) -> None:
    model_id = _model(client, ADAM)
    val = {"x": X[::2].tolist(), "y": Y[::2].tolist()}
    job = _fit(client, model_id, 3, validation_data=val)
    assert job["status"] == "succeeded", job
    url = f"/v1/models/{model_id}"
    for epoch in range(3):  # evaluate on an epoch's checkpoint reproduces its val_ values
        r = client.post(f"{url}/evaluate", json={**val, "batch_size": 16,
                                                 "checkpoint": f"epoch:{epoch}"})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json() == {"loss": job["history"]["val_loss"][epoch],
                            "accuracy": job["history"]["val_accuracy"][epoch]}  # fmt: skip
    # The same through test_on_batch when one batch holds everything, with job_id given.
    r = client.post(f"{url}/test_on_batch",
                    json={**val, "checkpoint": "epoch:1", "job_id": job["id"]})  # fmt: skip
    evaluated = client.post(f"{url}/evaluate", json={**val, "batch_size": 50,
                                                     "checkpoint": "epoch:1"}).json()  # fmt: skip
    assert r.json() == evaluated
    trainer = _trainer(ADAM)
    trainer.fit(X, Y, args=FitArgs(batch_size=16, epochs=1, shuffle=False))
    for route in ("predict", "predict_on_batch"):
        r = client.post(f"{url}/{route}", json={"x": X[:5].tolist(), "checkpoint": "epoch:0"})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["predictions"], trainer.predict(X[:5]),
                                   rtol=RTOL, atol=ATOL)  # fmt: skip
    current = client.post(f"{url}/predict", json={"x": X[:5].tolist()}).json()
    latest = client.post(f"{url}/predict", json={"x": X[:5].tolist(), "checkpoint": "latest"})
    assert latest.json() == current
    # train_on_batch from epoch 0's weights and optimizer state; the result is the model's.
    r = client.post(f"{url}/train_on_batch", json=_batch(PARTS[0], checkpoint="epoch:0"))
    assert r.status_code == 200, r.text
    _same(r.json(), on_batch.train_on_batch(trainer, X[PARTS[0]], Y[PARTS[0]]))
    _same_weights(_weights(client, model_id), trainer.model.get_weights())
    assert trainer.optimizer.iterations == 7 + 1


def test_selector_refusals(client: TestClient) -> None:
    model_id = _model(client, ADAM)
    url = f"/v1/models/{model_id}"
    body = {"x": X[:4].tolist(), "y": Y[:4].tolist()}
    _refused(client.post(f"{url}/evaluate", json={**body, "checkpoint": "latest"}), 404,
             ["body", "checkpoint"], "has no fit job")  # fmt: skip
    job = _fit(client, model_id, 1)
    other = _model(client, ADAM)
    other_job = _fit(client, other, 1)
    for route in ("evaluate", "test_on_batch", "train_on_batch"):
        _refused(client.post(f"{url}/{route}", json={**body, "checkpoint": "latest",
                                                     "job_id": other_job["id"]}),
                 422, ["body", "job_id"], "is a job of model")  # fmt: skip
    x = {"x": X[:4].tolist()}
    for route in ("predict", "predict_on_batch"):
        _refused(client.post(f"{url}/{route}", json={**x, "checkpoint": "latest",
                                                     "job_id": str(uuid.uuid4())}),
                 404, ["body", "job_id"], "does not exist")  # fmt: skip
        _refused(client.post(f"{url}/{route}", json={**x, "job_id": job["id"]}), 422,
                 ["body", "job_id"], "no checkpoint")  # fmt: skip
        _refused(client.post(f"{url}/{route}", json={**x, "checkpoint": "epoch:9"}), 404,
                 ["body", "checkpoint"], "no checkpoint 'epoch:9'")  # fmt: skip
        _refused(client.post(f"{url}/{route}", json={**x, "checkpoint": "first"}), 422,
                 ["body", "checkpoint"], "not a checkpoint selector")  # fmt: skip


def test_on_batch_refusals_change_nothing(client: TestClient) -> None:
    model_id = _model(client)
    url = f"/v1/models/{model_id}"
    for route in ("train_on_batch", "test_on_batch"):
        _refused(client.post(f"{url}/{route}", json=_batch(PARTS[0])), 422, ["body", "compile"],
                 "has not been compiled")  # fmt: skip
    client.post(f"{url}/compile", json=ADAM)
    before = client.get(url).json()
    bad_x = X[:4].tolist()
    bad_x[2] = [float("nan")]
    cases = [
        ({"x": X[:5].tolist(), "y": Y[:4].tolist()}, ["body", "y"], "same length"),
        ({"x": X[:4, None].tolist(), "y": Y[:4].tolist()}, ["body", "x"], "expected shape"),
        (_batch(PARTS[0], class_weight={"0": 1.0}, sample_weight=[1.0] * 30),
         ["body", "class_weight"], "sample_weight"),
        (_batch(PARTS[0], compile={"loss": "mse", "metrics": ["nope"]}),
         ["body", "compile", "metrics", 0], "unknown metric"),
        ({"x": X[:4].tolist()}, ["body", "y"], "Field required"),
    ]  # fmt: skip
    for route in ("train_on_batch", "test_on_batch"):
        for body, loc, words in cases:
            if route == "test_on_batch" and "class_weight" in body:
                loc, words = ["body", "class_weight"], "Extra inputs"
            _refused(client.post(f"{url}/{route}", json=body), 422, loc, words)
        text = json.dumps({"x": bad_x, "y": Y[:4].tolist()})
        r = client.post(f"{url}/{route}", content=text,
                        headers={"content-type": "application/json"})  # fmt: skip
        _refused(r, 422, ["body", "x", 2, 0], "finite")
    r = client.post(f"{url}/predict_on_batch", content=json.dumps({"x": bad_x}),
                    headers={"content-type": "application/json"})  # fmt: skip
    _refused(r, 422, ["body", "x", 2, 0], "finite")
    _refused(client.post(f"/v1/models/{uuid.uuid4()}/train_on_batch", json=_batch(PARTS[0])),
             404, ["path", "model_id"])  # fmt: skip
    assert client.get(url).json() == before


def test_class_weight_in_train_on_batch(client: TestClient) -> None:
    model_id = _model(client, ADAM)
    trainer = _trainer(ADAM)
    weights = {"0": 0.25, "1": 4.0}
    r = client.post(f"/v1/models/{model_id}/train_on_batch",
                    json=_batch(PARTS[1], class_weight=weights))  # fmt: skip
    _same(r.json(), on_batch.train_on_batch(trainer, X[PARTS[1]], Y[PARTS[1]],
                                            class_weight=weights))  # fmt: skip


def test_refused_while_a_fit_is_active(client: TestClient) -> None:
    model_id = _model(client, SGD)
    url = f"/v1/models/{model_id}"
    body = {"x": X.tolist(), "y": Y.tolist(), "batch_size": 1, "epochs": 10_000}
    job = client.post(f"{url}/fit", json=body).json()
    before = client.get(url).json()
    _refused(client.post(f"{url}/compile", json=ADAM), 409, ["path", "model_id"], "training")
    _refused(client.post(f"{url}/train_on_batch", json=_batch(PARTS[0])), 409,
             ["path", "model_id"], "training")  # fmt: skip
    # reading goes on: the weights the model holds until the job ends
    assert client.post(f"{url}/test_on_batch", json=_batch(PARTS[0])).status_code == 200
    assert client.get(url).json() == before
    client.post(f"/v1/jobs/{job['id']}/cancel")
    assert (
        wait_for(client, job["id"], {"cancelled", "succeeded", "failed"})["status"] == "cancelled"
    )
    assert client.post(f"{url}/train_on_batch", json=_batch(PARTS[0])).status_code == 200


def test_concurrent_calls_run_one_after_the_other(client: TestClient) -> None:
    """Two calls at once on the same batch: both steps land, from the same start as two calls
    in a row (the row lock serialises them; neither update is lost)."""
    model_id = _model(client, ADAM)
    trainer = _trainer(ADAM)
    expected = [on_batch.train_on_batch(trainer, X, Y) for _ in range(2)]
    results: list[dict[str, Any]] = []

    def call() -> None:
        r = client.post(f"/v1/models/{model_id}/train_on_batch", json=_batch(slice(None)))
        results.append(r.json())

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.sort(key=lambda logs: -logs["loss"])  # the loss falls from the first to the second
    for got, want in zip(results, expected, strict=True):
        _same(got, want)
    _same_weights(_weights(client, model_id), trainer.model.get_weights())


def test_concurrent_calls_on_the_embedded_database(tmp_path: Path) -> None:
    """SQLite has no row locks: the per-process lock serialises the calls instead."""
    settings = Settings(data_dir=tmp_path, database_url=None, redis_url=None)
    with TestClient(create_app(settings)) as embedded:
        test_concurrent_calls_run_one_after_the_other(embedded)


def test_the_routes_are_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for route in ("compile", "train_on_batch", "test_on_batch", "predict_on_batch"):
        operation = spec["paths"][f"/v1/models/{{model_id}}/{route}"]["post"]
        assert {"404", "422"} <= set(operation["responses"]), route
    schemas = spec["components"]["schemas"]
    for name in ("CompileRequest", "TrainOnBatchRequest", "TestOnBatchRequest",
                 "PredictOnBatchRequest", "EvaluateRequest", "PredictRequest"):  # fmt: skip
        assert schemas[name].get("examples"), name
    for name in ("TrainOnBatchRequest", "EvaluateRequest", "PredictRequest"):
        assert {"checkpoint", "job_id"} <= set(schemas[name]["properties"]), name
