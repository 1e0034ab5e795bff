"""predict with binary bodies and answers, and predict and evaluate over more rows than
PREDICT_SYNC_MAX_ROWS run as jobs: a predict job's outputs become a dataset, an evaluate job's
logs its result; both equal what the request path computes."""

from __future__ import annotations

import io

import numpy as np
from fastapi.testclient import TestClient

from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.trainer import Trainer
from tests.datasets.test_fit_from_dataset import COMPILE, MODEL, X, Y, new_model, upload
from tests.e2e.scenario_checks import wait_for

SYNC_MAX = 50


SETTINGS = {"predict_sync_max_rows": SYNC_MAX}


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_predict_takes_and_gives_npy_and_npz(client: TestClient) -> None:
    model = new_model(client)
    x = X[:40]
    as_json = client.post(f"/v1/models/{model}/predict", json={"x": x.tolist(), "batch_size": 8})
    assert as_json.status_code == 200, as_json.text
    expected = np.asarray(as_json.json()["predictions"], dtype=np.float32)
    r = client.post(f"/v1/models/{model}/predict?batch_size=8", content=npy(x),
                    headers={"content-type": "application/x-npy",
                             "accept": "application/x-npy"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-npy"
    got = np.load(io.BytesIO(r.content), allow_pickle=False)
    np.testing.assert_array_equal(got, expected)
    buf = io.BytesIO()
    np.savez(buf, x=x)
    r = client.post(f"/v1/models/{model}/predict?batch_size=8", content=buf.getvalue(),
                    headers={"content-type": "application/x-npz",
                             "accept": "application/x-npz"})  # fmt: skip
    assert r.status_code == 200, r.text
    with np.load(io.BytesIO(r.content), allow_pickle=False) as npz:
        [name] = npz.files
        np.testing.assert_array_equal(npz[name], expected)
    # A JSON body with Accept npy; an npy body with a JSON answer.
    r = client.post(f"/v1/models/{model}/predict", json={"x": x.tolist(), "batch_size": 8},
                    headers={"accept": "application/x-npy"})  # fmt: skip
    np.testing.assert_array_equal(np.load(io.BytesIO(r.content)), expected)
    r = client.post(f"/v1/models/{model}/predict?batch_size=8", content=npy(x),
                    headers={"content-type": "application/x-npy"})  # fmt: skip
    assert r.json() == as_json.json()


def test_bad_binary_bodies_are_4xx(client: TestClient) -> None:
    model = new_model(client)
    npy_headers = {"content-type": "application/x-npy"}
    cases = [
        (f"/v1/models/{model}/predict", npy(X[:4])[:-3], 422),  # truncated
        (f"/v1/models/{model}/predict?batch=3", npy(X[:4]), 422),  # unknown parameter
        (f"/v1/models/{model}/predict?batch_size=x", npy(X[:4]), 422),
        (f"/v1/models/{model}/predict", npy(np.zeros((4, 5), np.float32)), 422),  # shape
        ("/v1/models/not-a-uuid/predict", npy(X[:4]), 422),
        ("/v1/models/00000000-0000-4000-8000-000000000000/predict", npy(X[:4]), 404),
    ]
    for url, body, status in cases:
        r = client.post(url, content=body, headers=npy_headers)
        assert r.status_code == status, (url, r.text)
        assert r.json()["detail"][0]["loc"], r.text


def test_large_predict_and_evaluate_run_as_jobs(client: TestClient) -> None:
    ds = upload(client, x=X, y=Y)
    model = new_model(client)
    ref = {"dataset": ds, "array": "x"}
    r = client.post(f"/v1/models/{model}/predict", json={"x": ref, "batch_size": 16})
    assert r.status_code == 202, r.text
    job = wait_for(client, r.json()["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded" and job["kind"] == "predict", job
    out = client.get(f"/v1/datasets/{job['result_dataset_id']}").json()
    assert out["format"] == "predict" and out["source_job_id"] == job["id"]
    [array] = out["arrays"]
    got = np.load(io.BytesIO(client.get(
        f"/v1/datasets/{out['id']}/arrays/{array['name']}").content))  # fmt: skip
    parts = []  # in parts of 48 rows, a multiple of the batch size: the same batches
    for lo in range(0, len(X), 48):
        rows = {**ref, "rows": [lo, min(lo + 48, len(X))]}
        r = client.post(f"/v1/models/{model}/predict", json={"x": rows, "batch_size": 16},
                        headers={"accept": "application/x-npy"})  # fmt: skip
        assert r.status_code == 200, r.text
        parts.append(np.load(io.BytesIO(r.content)))
    np.testing.assert_array_equal(got, np.concatenate(parts))

    r = client.post(f"/v1/models/{model}/evaluate", json={
        "compile": COMPILE, "x": ref, "y": {"dataset": ds, "array": "y"}})  # fmt: skip
    assert r.status_code == 202, r.text
    job = wait_for(client, r.json()["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded" and job["kind"] == "evaluate", job
    trainer = Trainer(Model.from_config(MODEL, seed=5), CompileSpec.parse(COMPILE), device=None)
    assert job["result"] == trainer.evaluate(X, Y)
    # A dataset a predict job produced is a dataset like any other.
    assert client.delete(f"/v1/datasets/{out['id']}").status_code == 204
