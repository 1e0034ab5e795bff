"""Fits, evaluations and predictions by reference to uploaded datasets, on the real Postgres and
the embedded SQLite database: a fit from a dataset equals the same fit from inline arrays bit for
bit; bad references are 422s that leave no job; a dataset a queued job reads is not deleted; a
job whose dataset vanished fails with a clear error."""

from __future__ import annotations

import io
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from app.jobs.runner import run_fit_job
from app.runtime.context import AppContext
from tests.e2e.scenario_checks import wait_for

RNG = np.random.default_rng(7)
X = RNG.integers(0, 256, (240, 6), dtype=np.uint8)  # uint8 features, cast on the device
Y = (X[:, 0] > 127).astype(np.int64)
MODEL = {"class_name": "Sequential", "config": {"name": "mlp", "layers": [
    {"class_name": "InputLayer", "config": {"batch_shape": [None, 6], "dtype": "float32"}},
    {"class_name": "Rescaling", "config": {"scale": 1 / 255}},
    {"class_name": "Dense", "config": {"units": 8, "activation": "relu"}},
    {"class_name": "Dropout", "config": {"rate": 0.2}},
    {"class_name": "Dense", "config": {"units": 1, "activation": "sigmoid"}}]}}  # fmt: skip
COMPILE = {"optimizer": "adam", "loss": "binary_crossentropy", "metrics": ["accuracy"]}
FIT = {"compile": COMPILE, "batch_size": 32, "epochs": 3, "validation_split": 0.25,
       "seed": 11, "shuffle": True}  # fmt: skip


def ctx_of(client: TestClient) -> AppContext:
    ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
    return ctx


def upload(client: TestClient, **arrays: np.ndarray) -> str:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    r = client.post("/v1/datasets", content=buf.getvalue(),
                    headers={"content-type": "application/x-npz"})  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def new_model(client: TestClient) -> str:
    r = client.post("/v1/models", json={"config": MODEL, "seed": 5})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def fit(client: TestClient, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    model = new_model(client)
    r = client.post(f"/v1/models/{model}/fit", json=body)
    assert r.status_code == 202, r.text
    job = wait_for(client, r.json()["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job
    return job["history"], client.get(f"/v1/models/{model}/weights").content


def test_a_fit_from_a_dataset_equals_the_inline_fit_bit_for_bit(client: TestClient) -> None:
    ds = upload(client, x=X, y=Y)
    ref = {"x": {"dataset": ds, "array": "x"}, "y": {"dataset": ds, "array": "y"}}
    history_ref, weights_ref = fit(client, {**FIT, **ref})
    history_inline, weights_inline = fit(client, {**FIT, "x": X.tolist(), "y": Y.tolist()})
    assert history_ref == history_inline
    assert weights_ref == weights_inline

    # Rows of a dataset, and validation_data by reference.
    def rows(name: str, start: int, stop: int) -> dict[str, Any]:
        return {"dataset": ds, "array": name, "rows": [start, stop]}

    part = {"x": rows("x", 0, 180), "y": rows("y", 0, 180),
            "validation_data": {"x": rows("x", 180, 240), "y": rows("y", 180, 240)}}  # fmt: skip
    history_rows, weights_rows = fit(client, {**FIT, "validation_split": 0.0, **part})
    assert history_rows == history_ref and weights_rows == weights_ref
    # evaluate and predict by reference give what they give inline.
    model = new_model(client)
    by_ref = client.post(f"/v1/models/{model}/evaluate",
                         json={"compile": COMPILE, **ref}).json()  # fmt: skip
    inline = client.post(f"/v1/models/{model}/evaluate", json={
        "compile": COMPILE, "x": X.tolist(), "y": Y.tolist()}).json()  # fmt: skip
    assert by_ref == inline
    p_ref = client.post(f"/v1/models/{model}/predict", json={"x": ref["x"]}).json()
    p_inline = client.post(f"/v1/models/{model}/predict", json={"x": X.tolist()}).json()
    assert p_ref == p_inline
    one = {"dataset": ds, "array": "x", "rows": [0, 16]}
    r = client.post(f"/v1/models/{model}/predict_on_batch", json={"x": one})
    # Against the same 16 rows inline: a batch of another size may round differently (BLAS).
    inline_16 = client.post(f"/v1/models/{model}/predict_on_batch", json={"x": X[:16].tolist()})
    assert r.status_code == 200 and r.json()["predictions"] == inline_16.json()["predictions"]


def test_bad_references_are_422_and_leave_no_job(client: TestClient) -> None:
    ds = upload(client, x=X, y=Y, wide=np.zeros((240, 7), np.float32))
    model = new_model(client)
    x, y = {"dataset": ds, "array": "x"}, {"dataset": ds, "array": "y"}
    cases = [
        ({"x": {"dataset": str(uuid.uuid4()), "array": "x"}, "y": y}, ["body", "x", "dataset"]),
        ({"x": {"dataset": "nope", "array": "x"}, "y": y}, ["body", "x", "dataset"]),
        ({"x": {"dataset": ds, "array": "z"}, "y": y}, ["body", "x", "array"]),
        ({"x": {**x, "rows": [0, 241]}, "y": y}, ["body", "x", "rows"]),
        ({"x": {**x, "rows": [5, 5]}, "y": y}, ["body", "x", "rows"]),
        ({"x": {**x, "rows": [0, 100]}, "y": y}, ["body", "y"]),  # lengths disagree
        ({"x": {"dataset": ds, "array": "wide"}, "y": y}, ["body", "x"]),  # shape
    ]
    for refs, loc in cases:
        r = client.post(f"/v1/models/{model}/fit", json={**FIT, **refs})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == loc, r.text
    assert client.get(f"/v1/jobs?model_id={model}").json()["items"] == []


def test_a_dataset_in_use_is_not_deleted_and_a_vanished_one_fails_the_job(
    client: TestClient, tmp_path: Path
) -> None:
    ds = upload(client, x=X, y=Y)
    ctx = ctx_of(client)
    dispatcher, ctx.dispatcher = ctx.dispatcher, None  # the job stays queued
    model = new_model(client)
    r = client.post(f"/v1/models/{model}/fit", json={
        **FIT, "x": {"dataset": ds, "array": "x"}, "y": {"dataset": ds, "array": "y"}})  # fmt: skip
    ctx.dispatcher = dispatcher
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    r = client.delete(f"/v1/datasets/{ds}")
    assert r.status_code == 409 and job_id in r.json()["detail"][0]["msg"]
    # The files go missing behind the service's back (an artifact store not shared with this
    # worker): the job fails, saying so, without a server path.
    shutil.rmtree(tmp_path / "artifacts" / "datasets" / ds)
    run_fit_job(ctx, uuid.UUID(job_id))
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed", job
    assert job["error"]["type"] == "DatasetMissing"
    assert "shared" in job["error"]["message"] and str(tmp_path) not in job["error"]["message"]
    assert client.delete(f"/v1/datasets/{ds}").status_code == 204


def test_a_resumed_fit_reads_the_same_dataset_and_needs_it(client: TestClient) -> None:
    ds = upload(client, x=X, y=Y)
    refs = {"x": {"dataset": ds, "array": "x"}, "y": {"dataset": ds, "array": "y"}}
    model = new_model(client)
    r = client.post(f"/v1/models/{model}/fit", json={**FIT, **refs})
    parent = wait_for(client, r.json()["id"], {"succeeded", "failed"})
    assert parent["status"] == "succeeded", parent
    r = client.post(f"/v1/jobs/{parent['id']}/resume", json={"checkpoint": "epoch:1",
                                                              "epochs": 5})  # fmt: skip
    assert r.status_code == 202, r.text
    child = wait_for(client, r.json()["id"], {"succeeded", "failed"})
    straight, _ = fit(client, {**FIT, **refs, "epochs": 5})
    assert child["history"] == {k: v[2:] for k, v in straight.items()}
    assert client.delete(f"/v1/datasets/{ds}").status_code == 204
    r = client.post(f"/v1/jobs/{parent['id']}/resume", json={"checkpoint": "epoch:1"})
    assert r.status_code == 409 and ds in r.json()["detail"][0]["msg"], r.text


TEXT = {"class_name": "Sequential", "config": {"name": "text", "layers": [
    {"class_name": "InputLayer", "config": {"batch_shape": [None, 8], "dtype": "int32"}},
    {"class_name": "Embedding", "config": {"input_dim": 20, "output_dim": 4, "mask_zero": True}},
    {"class_name": "LSTM", "config": {"units": 3}},
    {"class_name": "Dense", "config": {"units": 1, "activation": "sigmoid"}}]}}  # fmt: skip


def test_token_ids_from_a_dataset_equal_inline_ones(client: TestClient) -> None:
    """int32 token ids stay integers from the file to the Embedding: the same fit as the JSON
    integers inline, bit for bit; an id the Embedding cannot take is a 422, as inline."""
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 20, (120, 8)).astype(np.int32)
    tokens[:, 6:] = 0  # padding
    labels = (tokens[:, 0] > 9).astype(np.int64)
    ds = upload(client, x=tokens, y=labels)
    body = {**FIT, "epochs": 2}
    results = []
    for data in ({"x": {"dataset": ds, "array": "x"}, "y": {"dataset": ds, "array": "y"}},
                 {"x": tokens.tolist(), "y": labels.tolist()}):  # fmt: skip
        model = client.post("/v1/models", json={"config": TEXT, "seed": 5}).json()["id"]
        r = client.post(f"/v1/models/{model}/fit", json={**body, **data})
        assert r.status_code == 202, r.text
        job = wait_for(client, r.json()["id"], {"succeeded", "failed"})
        assert job["status"] == "succeeded", job
        results.append((job["history"], client.get(f"/v1/models/{model}/weights").content))
    assert results[0] == results[1]
    bad = tokens.copy()
    bad[7, 3] = 25
    ds_bad = upload(client, x=bad, y=labels)
    r = client.post(
        f"/v1/models/{model}/fit",
        json={
            **body,
            "x": {"dataset": ds_bad, "array": "x"},
            "y": {"dataset": ds_bad, "array": "y"},
        },
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "x"], r.text
    assert "[0, 20)" in r.json()["detail"][0]["msg"]
