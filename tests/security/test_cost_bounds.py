"""Bounded cost per request (issue 10, item 5): a small request never allocates gigabytes or runs
for minutes in the API process. predict and evaluate past SYNC_MAX_COST run as jobs (202); the
routes without a job form are refused with a 413 naming the limit; synchronous loops stop at
SYNC_DEADLINE_S with a 422; a fit's steps and a job's batches are bounded (422s naming the
argument) before any job row exists.

The issue's case is a RepeatVector of 65,536 after a 1,024-wide input: one row's output alone is
256 MiB of float32, and answering it as JSON took 4.2 GB and 59 s. Every request here is
bounded by a generous timeout (30 s) to catch hangs; no assertion is about speed."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from tests.api.conftest import serve
from tests.e2e.harness import poll, start_api
from tests.support import scenario

TIMEOUT_S = 30.0
WIDE, REPEAT = 1024, 65536
MiB = 1 << 20


def repeat_model(*more: dict[str, Any]) -> dict[str, Any]:
    return {"class_name": "Sequential", "config": {"name": "repeat", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, WIDE]}},
        {"class_name": "RepeatVector", "config": {"n": REPEAT}}, *more]}}  # fmt: skip


def rows(n: int) -> list[list[float]]:
    return np.full((n, WIDE), 0.5, np.float32).tolist()


def post(client: TestClient | httpx.Client, url: str, **kwargs: Any) -> httpx.Response:
    start = time.monotonic()  # a real server's client has its timeout; TestClient takes none
    r = client.post(url, **kwargs)
    assert time.monotonic() - start < TIMEOUT_S, f"{url} took longer than {TIMEOUT_S} s"
    return r


def refused(r: httpx.Response, status: int, kind: str, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    detail: dict[str, Any] = r.json()["detail"][0]
    assert detail["type"] == kind, detail
    for word in words:
        assert word in detail["msg"], detail
    return detail


def create(client: TestClient | httpx.Client, config: dict[str, Any]) -> str:
    r = post(client, "/v1/models", json={"config": config, "seed": 1})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@contextmanager
def jobs_not_run(client: TestClient) -> Iterator[None]:
    """Jobs are queued but never run: these tests check the API's answers, and the issue's
    predict job would hold gigabytes in this process's in-process executor."""
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    dispatcher, ctx.dispatcher = ctx.dispatcher, None
    try:
        yield
    finally:
        ctx.dispatcher = dispatcher


# -- the issue's model, default settings ---------------------------------------------------------
def test_the_repeat_vector_requests_become_jobs_or_413s(tmp_path: Path) -> None:
    with serve(tmp_path) as c, jobs_not_run(c):
        for n in (8, 64):  # a 500 after 49 s and 9.4 GB for 8 rows, before
            r = post(c, f"/v1/models/{create(c, repeat_model())}/predict", json={"x": rows(n)})
            assert r.status_code == 202, r.text
            assert r.json()["kind"] == "predict"
        npy = io.BytesIO()
        np.save(npy, np.full((8, WIDE), 0.5, np.float32))
        r = post(c, f"/v1/models/{create(c, repeat_model())}/predict", content=npy.getvalue(),
                 headers={"content-type": "application/x-npy"})  # fmt: skip
        assert r.status_code == 202, r.text

        model_id = create(c, repeat_model())
        compiled = {"optimizer": "sgd", "loss": "mse"}
        detail = refused(post(c, f"/v1/models/{model_id}/predict_on_batch", json={"x": rows(1)}),
                         413, "cost_too_high", "SYNC_MAX_COST (134217728)",
                         "/v1/models/{id}/predict")  # fmt: skip
        assert detail["loc"] == ["body", "x"]
        for route, job_route in (("test_on_batch", "evaluate"), ("train_on_batch", "fit")):
            body = {"x": rows(1), "y": [[[0.0]]], "compile": compiled}
            r = post(c, f"/v1/models/{model_id}/{route}", json=body)
            refused(r, 413, "cost_too_high", "SYNC_MAX_COST", f"/v1/models/{{id}}/{job_route}")
        assert c.get(f"/v1/models/{model_id}").json()["weights"] == "initial"


def test_a_model_too_costly_for_one_sample_can_only_predict_as_a_job(tmp_path: Path) -> None:
    # A Dense over the repeated rows: three tensors of 2**26 elements a sample, past 2**27.
    config = repeat_model({"class_name": "Dense", "config": {"units": WIDE}})
    with serve(tmp_path) as c, jobs_not_run(c):
        model_id = create(c, config)
        compiled = {"optimizer": "sgd", "loss": "mse"}
        detail = refused(post(c, f"/v1/models/{model_id}/compile", json=compiled), 413,
                         "cost_too_high", "one sample", "SYNC_MAX_COST")  # fmt: skip
        assert detail["loc"] == ["path", "model_id"]
        body = {"compile": compiled, "x": rows(1), "y": [[[0.0]]], "batch_size": 1}
        for route in ("fit", "evaluate"):
            refused(post(c, f"/v1/models/{model_id}/{route}", json=body), 413, "cost_too_high")
        assert c.get("/v1/jobs").json()["items"] == []
        # Batches of 32 such samples are past JOB_MAX_BATCH_COST: the 422 said at most 31.
        r = post(c, f"/v1/models/{model_id}/predict", json={"x": rows(1), "batch_size": 31})
        assert r.status_code == 202, r.text


# -- the same rules on a small model, with small limits ------------------------------------------
# The scenario model holds 4 elements a sample (input, Normalization, two Dense) and answers 1:
# a predicted row costs 4 + 12 (its answer as JSON), a scored row 4 + 2 (label and loss term),
# a trained row twice that.
def test_past_sync_max_cost_predict_and_evaluate_run_as_jobs(tmp_path: Path) -> None:
    x, y = scenario.X[:10].tolist(), scenario.Y[:10].tolist()
    with serve(tmp_path, sync_max_cost=100) as c:
        model_id = create(c, scenario.MODEL)
        assert post(c, f"/v1/models/{model_id}/predict", json={"x": x[:6]}).status_code == 200
        r = post(c, f"/v1/models/{model_id}/predict", json={"x": x})  # 10 x 16 = 160
        assert r.status_code == 202 and r.json()["kind"] == "predict", r.text
        job = poll(lambda: _ended(c, r.json()["id"]), "the predict job")
        assert job["status"] == "succeeded", job
        body = {"x": x * 2, "y": y * 2, "compile": scenario.COMPILE}  # 20 x 6 = 120
        r = post(c, f"/v1/models/{model_id}/evaluate", json=body)
        assert r.status_code == 202 and r.json()["kind"] == "evaluate", r.text
        poll(lambda: _ended(c, r.json()["id"]), "the evaluate job")


def _ended(client: TestClient, job_id: str) -> dict[str, Any] | None:
    job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
    return job if job["status"] in ("succeeded", "failed", "cancelled") else None


@pytest.mark.parametrize(
    ("route", "body", "estimate"),
    [("predict_on_batch", {}, "160"),
     ("test_on_batch", {"y": scenario.Y[:10].tolist(), "compile": scenario.COMPILE}, "60"),
     ("train_on_batch", {"y": scenario.Y[:10].tolist(), "compile": scenario.COMPILE}, "120"),
     ("adapt", {}, "40")],
)  # fmt: skip
def test_routes_without_a_job_form_are_refused(
    tmp_path: Path, route: str, body: dict[str, Any], estimate: str
) -> None:
    with serve(tmp_path, sync_max_cost=30) as c:
        model_id = create(c, scenario.MODEL)
        r = post(c, f"/v1/models/{model_id}/{route}", json={"x": scenario.X[:10].tolist(), **body})
        refused(r, 413, "cost_too_high", f"estimated at {estimate} ", "SYNC_MAX_COST (30)")
        assert c.get(f"/v1/models/{model_id}").json()["weights"] == "initial"


@pytest.mark.parametrize("route", ["predict", "evaluate"])
def test_synchronous_loops_stop_at_the_deadline(tmp_path: Path, route: str) -> None:
    body = {"x": scenario.X[:40].tolist(), "y": scenario.Y[:40].tolist(),
            "compile": scenario.COMPILE, "batch_size": 4}  # fmt: skip
    if route == "predict":
        body = {"x": body["x"], "batch_size": 4}
    with serve(tmp_path, sync_deadline_s=1e-9) as c:
        r = post(c, f"/v1/models/{create(c, scenario.MODEL)}/{route}", json=body)
        refused(r, 422, "deadline_exceeded", "SYNC_DEADLINE_S", f"/v1/models/{{id}}/{route}")


# -- jobs ------------------------------------------------------------------------------------------
def _fit_refused(client: TestClient, body: dict[str, Any], field: str, *words: str) -> None:
    r = post(client, f"/v1/models/{create(client, scenario.MODEL)}/fit", json=body)
    detail = refused(r, 422, "value_error", *words)
    assert detail["loc"] == ["body", field], detail
    assert client.get("/v1/jobs").json()["items"] == []


def test_epochs_times_steps_is_bounded(tmp_path: Path) -> None:
    # 500 rows in batches of 128: 4 steps an epoch.
    with serve(tmp_path, job_max_steps=100) as c:
        _fit_refused(c, scenario.fit_body(epochs=300, callbacks=[]), "epochs",
                     "1200 steps", "JOB_MAX_STEPS (100)", "at most 25")  # fmt: skip
        _fit_refused(c, scenario.fit_body(epochs=2, callbacks=[], steps_per_epoch=51), "epochs",
                     "102 steps")  # fmt: skip
    # The issue's `epochs: 100000`, on default settings: past JOB_MAX_EPOCHS.
    with serve(tmp_path / "defaults") as c:
        _fit_refused(c, scenario.fit_body(epochs=100_000, callbacks=[]), "epochs",
                     "JOB_MAX_EPOCHS (10000)")  # fmt: skip


def test_a_job_batch_is_bounded(tmp_path: Path) -> None:
    # A trained sample costs 12: batches of 128 are 1536; 8 samples fit in 100.
    with serve(tmp_path, job_max_batch_cost=100, sync_max_cost=10) as c:
        _fit_refused(c, scenario.fit_body(epochs=1, callbacks=[]), "batch_size",
                     "1536", "JOB_MAX_BATCH_COST (100)", "at most 8 samples")  # fmt: skip
        # A predict past SYNC_MAX_COST is a job, whose batches of 32 would cost 32 x 4.
        r = post(c, f"/v1/models/{create(c, scenario.MODEL)}/predict",
                 json={"x": scenario.X[:10].tolist()})  # fmt: skip
        assert refused(r, 422, "value_error", "128")["loc"] == ["body", "batch_size"]
        assert c.get("/v1/jobs").json()["items"] == []


def test_resume_is_bounded_like_a_fit(tmp_path: Path) -> None:
    with serve(tmp_path, job_max_steps=100) as c:
        model_id = create(c, scenario.MODEL)
        job = post(c, f"/v1/models/{model_id}/fit",
                   json=scenario.fit_body(epochs=1, callbacks=[])).json()  # fmt: skip
        assert poll(lambda: _ended(c, job["id"]), "the fit")["status"] == "succeeded"
        r = post(c, f"/v1/jobs/{job['id']}/resume", json={"epochs": 50})  # 49 x 4 steps
        assert refused(r, 422, "value_error", "196 steps")["loc"] == ["body", "epochs"]
        r = post(c, f"/v1/jobs/{job['id']}/resume", json={"epochs": 3})
        assert r.status_code == 202, r.text
        assert poll(lambda: _ended(c, r.json()["id"]), "the resumed fit")["status"] == "succeeded"


# -- a real server --------------------------------------------------------------------------------
def _status_bytes(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


@pytest.mark.e2e
def test_the_issue_requests_leave_a_real_server_small(tmp_path: Path, redis_url: str) -> None:
    """uvicorn on the embedded database with default limits; jobs go to a Redis queue no worker
    reads, so the API process itself never runs them."""
    queue = f"fitapi-test-{uuid.uuid4().hex[:8]}"
    env = {"DATA_DIR": str(tmp_path / "data"), "REDIS_URL": redis_url, "CELERY_QUEUE": queue}
    api, base = start_api(env, tmp_path)
    try:
        with httpx.Client(base_url=base, timeout=TIMEOUT_S) as c:
            # Warm up every path the requests take (torch, a job's inputs file, the broker).
            small = create(c, scenario.MODEL)
            warm = post(c, f"/v1/models/{small}/predict", json={"x": [[0.5]] * 10_001})
            assert warm.status_code == 202, warm.text
            assert post(c, f"/v1/models/{small}/predict_on_batch",
                        json={"x": [[0.5]]}).status_code == 200  # fmt: skip
            models = [create(c, repeat_model()) for _ in range(3)]
            Path(f"/proc/{api.proc.pid}/clear_refs").write_text("5")  # peak := what it holds
            baseline = _status_bytes(api.proc.pid, "VmRSS")

            answers = [
                post(c, f"/v1/models/{models[0]}/predict", json={"x": rows(8)}),
                post(c, f"/v1/models/{models[1]}/predict", json={"x": rows(64)}),
            ]
            npy = io.BytesIO()
            np.save(npy, np.full((8, WIDE), 0.5, np.float32))
            answers.append(post(c, f"/v1/models/{models[2]}/predict", content=npy.getvalue(),
                                headers={"content-type": "application/x-npy"}))  # fmt: skip
            answers.append(post(c, f"/v1/models/{models[0]}/predict_on_batch",
                                json={"x": rows(1)}))  # fmt: skip
            one = {"x": rows(1), "y": [[[0.0]]], "compile": {"optimizer": "sgd", "loss": "mse"}}
            for route in ("test_on_batch", "train_on_batch"):
                answers.append(post(c, f"/v1/models/{models[0]}/{route}", json=one))
            growth = _status_bytes(api.proc.pid, "VmHWM") - baseline
    finally:
        api.stop()
        redis.Redis.from_url(redis_url).delete(queue)
    assert [r.status_code for r in answers] == [202, 202, 202, 413, 413, 413], [
        r.text for r in answers
    ]
    # One row through the model would allocate its RepeatVector output alone, 256 MiB: a growth
    # under half of that shows that no request ran the model, with room left for the bodies (at
    # most 64 rows of 1,024 numbers) and the allocator's noise.
    assert growth < 128 * MiB, f"the API's peak grew by {growth / MiB:.0f} MiB"
