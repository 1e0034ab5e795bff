"""A model keeps one weights file of its own: each change deletes the file it replaced once it
has committed, except a file a queued or running fit starts from and files that are not the
model's (a fit's checkpoints). Readers that lose a race with a change read again. Run on the
real Postgres (row locks) and on the embedded SQLite database (a per-process lock)."""

from __future__ import annotations

import io
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.db.models import DEFAULT_PROJECT_ID, JobRow
from app.db.scope import SYSTEM
from app.db.session import unit_of_work
from app.jobs import repository as repo
from app.jobs import service
from app.models import checkpoints, weights, weights_files
from app.models import service as models
from app.models.loading import load_weights
from app.runtime.context import AppContext
from tests.api.conftest import serve
from tests.e2e.scenario_checks import wait_for
from tests.support import scenario

X = scenario.X[::5]
Y = scenario.Y[::5]
SGD = {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9}},
       "loss": "binary_crossentropy", "metrics": ["accuracy"]}  # fmt: skip
BATCH = {"x": X.tolist(), "y": Y.tolist()}


@pytest.fixture(params=["postgres", "sqlite"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with serve(tmp_path, url) as c:
        yield c


def _ctx(client: TestClient) -> AppContext:
    ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
    return ctx


def _model(client: TestClient, compile_cfg: dict[str, Any] | None = SGD) -> uuid.UUID:
    r = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 3})
    assert r.status_code == 201, r.text
    model_id = uuid.UUID(r.json()["id"])
    if compile_cfg is not None:
        assert client.post(f"/v1/models/{model_id}/compile", json=compile_cfg).status_code == 200
    return model_id


def _key(client: TestClient, model_id: uuid.UUID) -> str | None:
    return models.get_model(_ctx(client), scope=SYSTEM, model_id=model_id).weights_key


def _own_files(client: TestClient, model_id: uuid.UUID) -> list[str]:
    """The model's own weights files on disk, as store keys."""
    root = _ctx(client).store.root
    folder = root / "models" / str(model_id)
    return (
        sorted(p.relative_to(root).as_posix() for p in folder.glob("*")) if folder.exists() else []
    )


def _job_files(client: TestClient) -> list[str]:
    root = _ctx(client).store.root
    return sorted(p.relative_to(root).as_posix() for p in (root / "jobs").rglob("*.safetensors"))


def _get_weights(client: TestClient, model_id: uuid.UUID) -> list[np.ndarray]:
    r = client.get(f"/v1/models/{model_id}/weights")
    assert r.status_code == 200, r.text
    with np.load(io.BytesIO(r.content)) as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]


def _put(client: TestClient, model_id: uuid.UUID, arrays: list[np.ndarray]) -> Any:
    return client.put(f"/v1/models/{model_id}/weights",
                      json={"weights": [a.tolist() for a in arrays]})  # fmt: skip


def _fit(client: TestClient, model_id: uuid.UUID, epochs: int = 2) -> dict[str, Any]:
    body = {**BATCH, "batch_size": 32, "epochs": epochs}
    r = client.post(f"/v1/models/{model_id}/fit", json=body)
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


def test_repeated_train_on_batch_keeps_one_file(client: TestClient) -> None:
    model_id = _model(client)
    assert _own_files(client, model_id) == []  # seeded weights: no file yet
    for _ in range(5):
        r = client.post(f"/v1/models/{model_id}/train_on_batch", json=BATCH)
        assert r.status_code == 200, r.text
        assert _own_files(client, model_id) == [_key(client, model_id)]
    # compile rewrites the file without the optimizer state, and deletes the one it replaced
    before = _get_weights(client, model_id)
    assert client.post(f"/v1/models/{model_id}/compile", json=SGD).status_code == 200
    assert _own_files(client, model_id) == [_key(client, model_id)]
    for got, want in zip(_get_weights(client, model_id), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_concurrent_train_on_batch_keeps_one_file(client: TestClient) -> None:
    model_id = _model(client)
    statuses: list[int] = []

    def call() -> None:
        for _ in range(3):
            r = client.post(f"/v1/models/{model_id}/train_on_batch", json=BATCH)
            statuses.append(r.status_code)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 9
    assert _own_files(client, model_id) == [_key(client, model_id)]


def test_put_weights_and_adapt_keep_one_file(client: TestClient) -> None:
    model_id = _model(client)
    arrays = _get_weights(client, model_id)
    for scale in (2.0, 3.0):
        r = _put(client, model_id, [a * scale for a in arrays])
        assert r.status_code == 200, r.text
        assert _own_files(client, model_id) == [_key(client, model_id)]
    r = client.post(f"/v1/models/{model_id}/adapt", json={"x": X.tolist()})
    assert r.status_code == 200, r.text
    assert _own_files(client, model_id) == [_key(client, model_id)]
    np.testing.assert_array_equal(_get_weights(client, model_id)[-1], arrays[-1] * 3.0)


def test_a_fit_replaces_the_model_file_and_its_checkpoints_stay(client: TestClient) -> None:
    model_id = _model(client)
    client.post(f"/v1/models/{model_id}/train_on_batch", json=BATCH)
    job = wait_for(client, _fit(client, model_id)["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job
    checkpoints = _job_files(client)
    assert checkpoints and _key(client, model_id) in checkpoints
    assert _own_files(client, model_id) == []  # the file the fit started from is gone
    # train_on_batch replaces the fit's final checkpoint, which stays with the job
    for _ in range(2):
        assert client.post(f"/v1/models/{model_id}/train_on_batch", json=BATCH).status_code == 200
        assert _own_files(client, model_id) == [_key(client, model_id)]
    assert _job_files(client) == checkpoints
    r = client.get(f"/v1/jobs/{job['id']}/checkpoints/latest/model.safetensors")
    assert r.status_code == 200, r.text


def test_a_queued_fit_keeps_the_file_it_starts_from(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _ctx(client)
    model_id = _model(client)
    client.post(f"/v1/models/{model_id}/train_on_batch", json=BATCH)
    start = _key(client, model_id)
    arrays = _get_weights(client, model_id)
    dispatcher, ctx.dispatcher = ctx.dispatcher, None  # the job stays queued
    job = _fit(client, model_id)
    assert job["status"] == "queued"
    r = _put(client, model_id, [a * 2.0 for a in arrays])
    assert r.status_code == 409 and "training" in r.json()["detail"][0]["msg"]
    # A replacement the active-job check did not stop still leaves the job's file alone.
    monkeypatch.setattr(weights, "check_not_training", lambda session, model_id: None)
    assert _put(client, model_id, [a * 2.0 for a in arrays]).status_code == 200
    assert start is not None and start in _own_files(client, model_id)
    ctx.dispatcher = dispatcher
    service.dispatch(ctx, uuid.UUID(job["id"]))
    assert wait_for(client, job["id"], {"succeeded", "failed"})["status"] == "succeeded"


def test_the_check_sees_queued_and_running_jobs_only(client: TestClient) -> None:
    ctx = _ctx(client)
    model_id = _model(client)
    client.post(f"/v1/models/{model_id}/train_on_batch", json=BATCH)
    key = _key(client, model_id)
    job_id = uuid.uuid4()
    with unit_of_work(ctx.sessions) as session:
        repo.add_job(session, row=JobRow(id=job_id, model_id=model_id, request={},
                                         project_id=DEFAULT_PROJECT_ID, data_key="jobs/x",
                                         base_weights_key=key, epochs=1,
                                         max_attempts=1))  # fmt: skip
    for status, kept in (("queued", True), ("running", True), ("succeeded", False),
                         ("failed", False), ("cancelled", False)):  # fmt: skip
        with unit_of_work(ctx.sessions) as session:
            row = repo.get_job(session, job_id=job_id, scope=SYSTEM)
            assert row is not None
            row.status = status
            session.flush()
            found = weights_files.replaced_file(session, model_id=model_id, old=key, new="x")
        assert (found is None) == kept, status
    with unit_of_work(ctx.sessions) as session:  # never a file that is not the model's own
        for old in ("jobs/a/checkpoints/a1-e000001.safetensors",
                    f"models/{uuid.uuid4()}/weights-1.safetensors",
                    f"models/{model_id}/../{model_id}/w.safetensors", None):  # fmt: skip
            assert weights_files.replaced_file(session, model_id=model_id, old=old, new="x") is None


def test_a_failed_delete_is_logged_and_the_change_stands(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model_id = _model(client)
    client.post(f"/v1/models/{model_id}/train_on_batch", json=BATCH)
    old = _key(client, model_id)

    def fail(key: str) -> None:
        raise PermissionError(key)

    monkeypatch.setattr(_ctx(client).store, "delete", fail)
    with caplog.at_level(logging.ERROR, logger=weights_files.__name__):
        assert client.post(f"/v1/models/{model_id}/train_on_batch", json=BATCH).status_code == 200
    assert _key(client, model_id) != old
    assert _own_files(client, model_id) == sorted([old, _key(client, model_id)])
    assert any("could not delete" in r.getMessage() for r in caplog.records)


READERS = [
    ("get", "weights", None),
    ("get", "model.keras", None),
    ("get", "model.safetensors", None),
    ("post", "predict", {"x": X.tolist()}),
    ("post", "predict_on_batch", {"x": X.tolist()}),
    ("post", "evaluate", BATCH),
    ("post", "test_on_batch", BATCH),
    ("post", "adapt", {"x": X.tolist()}),
]


def _race(monkeypatch: pytest.MonkeyPatch, ctx: AppContext, model_id: uuid.UUID,
          times: int) -> list[int]:  # fmt: skip
    """Every read of a weights file first replaces the model's weights (and so deletes the
    file about to be read), the first `times` times; counts the replacements."""
    done: list[int] = []
    arrays = weights.get_weights(ctx, scope=SYSTEM, model_id=model_id)

    def racing(store: Any, model: Any, key: str | None) -> Any:
        if len(done) < times:
            done.append(1)
            with np.load(io.BytesIO(arrays)) as npz:
                new = [npz[f"arr_{i}"] * (1.0 + len(done)) for i in range(len(npz.files))]
            weights.put_weights(ctx, scope=SYSTEM, model_id=model_id, arrays=new)
        return load_weights(store, model, key)

    ctx.cache.drop_model(model_id)
    monkeypatch.setattr(weights_files, "load_weights", racing)
    return done


@pytest.mark.parametrize(("method", "route", "body"), READERS)
def test_a_reader_racing_a_replacement_reads_again(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, method: str, route: str, body: Any
) -> None:
    ctx = _ctx(client)
    model_id = _model(client)
    client.post(f"/v1/models/{model_id}/train_on_batch", json=BATCH)
    expected = [a * 2.0 for a in _get_weights(client, model_id)]
    done = _race(monkeypatch, ctx, model_id, times=1)
    r = client.request(method, f"/v1/models/{model_id}/{route}",
                       **({} if body is None else {"json": body}))  # fmt: skip
    assert r.status_code == 200, r.text
    assert done == [1]
    monkeypatch.undo()
    if route == "weights":  # what was read is the replacement's weights
        with np.load(io.BytesIO(r.content)) as npz:
            for i, want in enumerate(expected):
                np.testing.assert_array_equal(npz[f"arr_{i}"], want)
    assert _own_files(client, model_id) == [_key(client, model_id)]


def test_a_reader_losing_twice_gets_a_409(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_id = _model(client)
    client.post(f"/v1/models/{model_id}/train_on_batch", json=BATCH)
    _race(monkeypatch, _ctx(client), model_id, times=2)
    r = client.post(f"/v1/models/{model_id}/predict", json={"x": X.tolist()})
    assert r.status_code == 409, r.text
    item = r.json()["detail"][0]
    assert item["loc"] == ["path", "model_id"] and "try again" in item["msg"]


def test_a_checkpoint_export_racing_a_delete_gets_a_404(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _ctx(client)
    model_id = _model(client)
    job = wait_for(client, _fit(client, model_id)["id"], {"succeeded", "failed"})

    deleted: list[int] = []

    def deleting(store: Any, model: Any, key: str | None) -> Any:
        if not deleted:
            deleted.append(1)
            models.delete_model(ctx, scope=SYSTEM, model_id=model_id)
        return load_weights(store, model, key)

    monkeypatch.setattr(checkpoints, "load_weights", deleting)
    r = client.get(f"/v1/jobs/{job['id']}/checkpoints/latest/model.safetensors")
    assert r.status_code == 404 and deleted == [1], r.text


def test_a_lost_checkpoint_file_is_a_409(client: TestClient) -> None:
    model_id = _model(client)
    job = wait_for(client, _fit(client, model_id)["id"], {"succeeded", "failed"})
    for path in (_ctx(client).store.root / "jobs" / job["id"]).rglob("*.safetensors"):
        path.unlink()
    for name in ("model.safetensors", "model.keras"):
        r = client.get(f"/v1/jobs/{job['id']}/checkpoints/latest/{name}")
        assert r.status_code == 409, r.text
        item = r.json()["detail"][0]
        assert item["loc"] == ["path", "checkpoint"] and "no longer stored" in item["msg"]


def test_deleting_a_model_removes_its_files(client: TestClient) -> None:
    model_id = _model(client)
    client.post(f"/v1/models/{model_id}/train_on_batch", json=BATCH)
    job = wait_for(client, _fit(client, model_id)["id"], {"succeeded", "failed"})
    client.post(f"/v1/models/{model_id}/train_on_batch", json=BATCH)
    assert _own_files(client, model_id) and _job_files(client)
    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    root = _ctx(client).store.root
    assert not (root / "models" / str(model_id)).exists()
    assert not (root / "jobs" / job["id"]).exists()


READING_ROUTES = [
    ("/v1/models/{model_id}/weights", "get"),
    ("/v1/models/{model_id}/model.keras", "get"),
    ("/v1/models/{model_id}/model.safetensors", "get"),
    ("/v1/models/{model_id}/predict", "post"),
    ("/v1/models/{model_id}/evaluate", "post"),
    ("/v1/models/{model_id}/test_on_batch", "post"),
    ("/v1/models/{model_id}/predict_on_batch", "post"),
    ("/v1/jobs/{job_id}/checkpoints/{checkpoint}/model.keras", "get"),
    ("/v1/jobs/{job_id}/checkpoints/{checkpoint}/model.safetensors", "get"),
]


def test_the_reading_routes_document_the_409(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, method in READING_ROUTES:
        assert "409" in paths[path][method]["responses"], path
