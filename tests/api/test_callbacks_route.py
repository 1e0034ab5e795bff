"""Fit callbacks over HTTP (embedded mode): a bad callback is a 422 naming the field before any
job is queued; a ModelCheckpoint job's checkpoints say what wrote them and `best` addresses one."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.scenario_checks import wait_for
from tests.support import scenario


@pytest.mark.parametrize(
    ("callback", "loc_tail", "text"),
    [
        ({"class_name": "ReduceLROnPlateauX"}, ["callbacks", 0, "class_name"], "unknown callback"),
        ({"class_name": "ReduceLROnPlateau", "config": {"factor": 1.5}},
         ["callbacks", 0, "config", "factor"], "< 1.0"),
        ({"class_name": "ModelCheckpoint", "config": {"save_freq": "batch"}},
         ["callbacks", 0, "config", "save_freq"], "'epoch'"),
        ({"class_name": "ModelCheckpoint", "config": {"filepath": "/etc/passwd"}},
         ["callbacks", 0, "config", "filepath"], ".keras"),
        ({"class_name": "TerminateOnNaN", "config": {"raise_error": 1}},
         ["callbacks", 0, "config", "raise_error"], "true or false"),
    ],
)  # fmt: skip
def test_bad_callbacks_are_422_and_queue_nothing(
    client: TestClient, callback: dict[str, Any], loc_tail: list[Any], text: str
) -> None:
    model = client.post("/v1/models", json={"config": scenario.MODEL}).json()
    r = client.post(f"/v1/models/{model['id']}/fit",
                    json=scenario.fit_body(epochs=2, callbacks=[callback]))  # fmt: skip
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"][0] == "body" and detail["loc"][-len(loc_tail) :] == loc_tail
    assert text in detail["msg"]
    assert client.get("/v1/jobs").json()["items"] == []


def test_best_checkpoint_over_http(client: TestClient) -> None:
    model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 4}).json()
    mc = {"class_name": "ModelCheckpoint", "config": {"monitor": "val_loss",
                                                      "save_best_only": True}}  # fmt: skip
    job = client.post(f"/v1/models/{model['id']}/fit",
                      json=scenario.fit_body(epochs=4, callbacks=[mc])).json()  # fmt: skip
    done = wait_for(client, job["id"], {"succeeded"})
    items = client.get(f"/v1/jobs/{job['id']}/checkpoints").json()["items"]
    assert {i["trigger"] for i in items} >= {"model_checkpoint", "final"}
    assert all((i["monitor"], i["mode"]) == ("val_loss", "min") for i in items)
    base = f"/v1/jobs/{job['id']}/checkpoints"
    assert client.get(f"{base}/best/model.safetensors").status_code == 200
    best_loss = min(done["history"]["val_loss"])
    assert any(i["logs"]["val_loss"] == best_loss and i["trigger"] == "model_checkpoint"
               for i in items)  # fmt: skip
