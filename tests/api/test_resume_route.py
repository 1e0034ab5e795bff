"""POST /v1/jobs/{id}/resume over HTTP (embedded mode): the new job, its links and history,
the model's weights after it, and the refusals with the field named. The bit-exact comparison
with an uninterrupted fit is in tests/jobs/test_resume.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.db.models import JobRow
from tests.api.conftest import serve
from tests.e2e.scenario_checks import wait_for
from tests.support import scenario


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The embedded app, checkpointing at every epoch end (so `epoch:N` exists for each N)."""
    with serve(tmp_path) as c:
        yield c


def _model(client: TestClient) -> str:
    r = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 2})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _fit(client: TestClient, model_id: str, epochs: int, **extra: Any) -> dict[str, Any]:
    body = scenario.fit_body(epochs=epochs, callbacks=[], seed=5, **extra)
    r = client.post(f"/v1/models/{model_id}/fit", json=body)
    assert r.status_code == 202, r.text
    return dict(r.json())


def _refused(r: Any, status: int, loc: list[str], text: str) -> None:
    assert r.status_code == status, r.text
    (item,) = r.json()["detail"]
    assert item["loc"] == loc and text in item["msg"], item


def test_resume_makes_a_linked_job_whose_history_is_its_own_epochs(client: TestClient) -> None:
    model_id = _model(client)
    parent = wait_for(client, _fit(client, model_id, 2)["id"], {"succeeded"})
    assert parent["parent_job_id"] is None and parent["start_checkpoint_id"] is None
    url = f"/v1/jobs/{parent['id']}/resume"
    # No body: the latest checkpoint (epoch 1) and the parent's 2 epochs leave nothing to run.
    _refused(client.post(url), 422, ["body", "epochs"], "must exceed 2")
    _refused(client.post(url, json={}), 422, ["body", "epochs"], "the parent's, 2")
    r = client.post(url, json={"epochs": 5})
    assert r.status_code == 202, r.text
    child = r.json()
    ckpts = client.get(f"/v1/jobs/{parent['id']}/checkpoints").json()["items"]
    final = next(c for c in ckpts if c["trigger"] == "final")
    assert child["parent_job_id"] == parent["id"] and child["start_checkpoint_id"] == final["id"]
    assert (child["model_id"], child["epochs"], child["epochs_done"]) == (model_id, 5, 2)
    done = wait_for(client, child["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    assert [len(v) for v in done["history"].values()] == [3] * len(done["history"])
    logs = client.get(f"/v1/jobs/{child['id']}/logs").json()["items"]
    assert [row["epoch"] for row in logs] == [2, 3, 4]
    ckpts = client.get(f"/v1/jobs/{child['id']}/checkpoints").json()["items"]
    (child_final,) = [c for c in ckpts if c["trigger"] == "final"]
    model = client.get(f"/v1/models/{model_id}").json()
    assert model["weights_checkpoint_id"] == child_final["id"] and model["weights"] == "trained"
    # A resumed job resumes too, from any of its checkpoints or its parent's.
    r = client.post(f"/v1/jobs/{child['id']}/resume", json={"checkpoint": "epoch:3"})
    assert r.status_code == 202 and r.json()["epochs_done"] == 4, r.text
    wait_for(client, r.json()["id"], {"succeeded"})
    r = client.post(url, json={"checkpoint": "epoch:0", "epochs": 2})
    assert r.status_code == 202 and r.json()["epochs_done"] == 1, r.text
    wait_for(client, r.json()["id"], {"succeeded"})
    assert "/v1/jobs/{job_id}/resume" in client.get("/openapi.json").json()["paths"]
    assert client.delete(f"/v1/models/{model_id}").status_code == 204  # parents and children
    assert client.get(f"/v1/jobs/{child['id']}").status_code == 404


def test_resume_refusals(client: TestClient) -> None:
    _refused(client.post(f"/v1/jobs/{uuid.uuid4()}/resume", json={}), 404, ["path", "job_id"],
             "does not exist")  # fmt: skip
    model_id = _model(client)
    running = _fit(client, model_id, 10_000)
    url = f"/v1/jobs/{running['id']}/resume"
    wait_for(client, running["id"], {"running"})
    _refused(client.post(url, json={"epochs": 9}), 409, ["path", "job_id"], "is running")
    client.post(f"/v1/jobs/{running['id']}/cancel")
    cancelled = wait_for(client, running["id"], {"cancelled"})
    bad: list[tuple[dict[str, Any], list[Any], str]] = [
        ({"checkpoint": "nope"}, ["body", "checkpoint"], "not a checkpoint selector"),
        ({"checkpoint": "epoch:99999", "epochs": 10}, ["body", "checkpoint"], "no checkpoint"),
        ({"checkpoint": ""}, ["body", "checkpoint"], "at least 1"),
        ({"epochs": 0}, ["body", "epochs"], "greater than or equal to 1"),
        ({"epochs": "9"}, ["body", "epochs"], "valid integer"),
        ({"epochs": 100_001}, ["body", "epochs"], "less than or equal"),
        ({"initial_epoch": 3}, ["body", "initial_epoch"], "not permitted"),
        ({"checkpoint": "epoch:0", "epochs": 1}, ["body", "epochs"], "must exceed 1"),
    ]
    for body, loc, text in bad:
        _refused(client.post(url, json=body), 422, loc, text)
    other = _fit(client, model_id, 10_000)  # the model is busy again
    _refused(client.post(url, json={"checkpoint": "epoch:0"}), 409, ["path", "job_id"],
             "already training")  # fmt: skip
    client.post(f"/v1/jobs/{other['id']}/cancel")
    wait_for(client, other["id"], {"cancelled"})
    r = client.post(url, json={"checkpoint": "epoch:0", "epochs": 3})
    assert r.status_code == 202, r.text
    assert wait_for(client, r.json()["id"], {"succeeded"})["parent_job_id"] == cancelled["id"]


def test_a_job_stored_by_a_newer_version_is_refused_with_409(client: TestClient) -> None:
    done = _fit(client, _model(client), 2)
    wait_for(client, done["id"], {"succeeded"})
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions() as session, session.begin():
        row = session.get(JobRow, uuid.UUID(done["id"]))
        row.request = {**row.request, "version": 99}
    r = client.post(f"/v1/jobs/{done['id']}/resume", json={"epochs": 3})
    _refused(r, 409, ["path", "job_id"], "newer version")
