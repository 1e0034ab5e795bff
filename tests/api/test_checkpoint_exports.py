"""A job's checkpoints listed and addressed (id, epoch:N, latest), exported as .keras files
Keras opens and as safetensors, and the model's weights as safetensors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from safetensors.numpy import load

from tests.e2e.scenario_checks import wait_for
from tests.support import scenario

os.environ.setdefault("KERAS_BACKEND", "torch")


def _fitted(client: TestClient) -> tuple[dict, dict]:
    model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 4}).json()
    job = client.post(f"/v1/models/{model['id']}/fit",
                      json=scenario.fit_body(epochs=3, callbacks=[])).json()  # fmt: skip
    return model, wait_for(client, job["id"], {"succeeded"})  # type: ignore[arg-type]


def test_checkpoints_listed_addressed_and_exported(client: TestClient, tmp_path: Path) -> None:
    import keras

    model, job = _fitted(client)
    listed = client.get(f"/v1/jobs/{job['id']}/checkpoints").json()["items"]
    assert listed and listed[-1]["epoch"] == 2 and listed[-1]["attempt"] == 1
    assert listed[-1]["logs"]["loss"] == job["history"]["loss"][-1]
    base = f"/v1/jobs/{job['id']}/checkpoints"
    by_latest = client.get(f"{base}/latest/model.safetensors")
    by_epoch = client.get(f"{base}/epoch:2/model.safetensors")
    by_id = client.get(f"{base}/{listed[-1]['id']}/model.safetensors")
    assert by_latest.status_code == by_epoch.status_code == by_id.status_code == 200
    tensors = load(by_latest.content)
    for other in (by_epoch, by_id):
        assert {k: v.tolist() for k, v in load(other.content).items()} == {
            k: v.tolist() for k, v in tensors.items()
        }
    current = client.get(f"/v1/models/{model['id']}/model.safetensors")
    assert current.status_code == 200
    assert {k: v.tolist() for k, v in load(current.content).items()} == {
        k: v.tolist() for k, v in tensors.items()
    }  # the final checkpoint holds the weights the model now has
    header = json.loads(by_latest.content[8 : 8 + int.from_bytes(by_latest.content[:8], "little")])
    order = json.loads(header["__metadata__"]["keras_order"])
    assert order == ["normalization/mean", "normalization/variance", "normalization/count",
                     "dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]  # fmt: skip
    path = tmp_path / "c.keras"
    path.write_bytes(client.get(f"{base}/epoch:2/model.keras").content)
    km = keras.saving.load_model(path)
    ours = client.post(f"/v1/models/{model['id']}/predict", json={"x": scenario.X.tolist()})
    np.testing.assert_allclose(km.predict(scenario.X, verbose=0), ours.json()["predictions"],
                               rtol=1e-6, atol=1e-7)  # fmt: skip


def test_bad_selectors(client: TestClient) -> None:
    _, job = _fitted(client)
    base = f"/v1/jobs/{job['id']}/checkpoints"
    r = client.get(f"{base}/epoch:9/model.keras")
    assert r.status_code == 404 and r.json()["detail"][0]["loc"] == ["path", "checkpoint"]
    r = client.get(f"{base}/best-one/model.keras")
    assert r.status_code == 422 and "epoch:N" in r.json()["detail"][0]["msg"]
    assert (
        client.get("/v1/jobs/00000000-0000-0000-0000-000000000000/checkpoints").status_code == 404
    )
