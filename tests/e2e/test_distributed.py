"""The scenario through uvicorn and a real Celery worker, on Postgres and Redis."""

from __future__ import annotations

import io
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.e2e.harness import Process, free_port, poll, start_api_and_workers, start_worker
from tests.e2e.scenario_checks import run_scenario, wait_for
from tests.support import scenario
from tests.support.prometheus import families, value

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(
    pg_database: Callable[[], str], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("distributed")
    env = {
        "DATABASE_URL": pg_database(),
        "REDIS_URL": redis_url,
        "CELERY_QUEUE": f"fitapi-test-{uuid.uuid4().hex[:8]}",
        "DATA_DIR": str(tmp / "data"),
        "JOB_HEARTBEAT_S": "0.2",
        "JOB_LEASE_S": "2",
        "REAPER_INTERVAL_S": "0.5",
        "CHECKPOINT_EVERY_S": "0",
    }
    metrics_port = free_port()  # the first worker's alone: the others are started without
    api, base, workers = start_api_and_workers(
        env, tmp, [("worker", {"METRICS_PORT": str(metrics_port)})]
    )
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            yield Stack(client, env, tmp, workers, metrics_port)
    finally:
        for worker in workers:
            worker.stop()
        api.stop()


@dataclass
class Stack:
    client: httpx.Client
    env: dict[str, str]
    tmp: Path
    workers: list[Process]
    metrics_port: int


def test_scenario_through_celery_worker(stack: Stack) -> None:
    run_scenario(stack.client)


def test_the_worker_serves_its_metrics_on_its_port(stack: Stack) -> None:
    """The worker that ran a fit counts its epochs, samples and checkpoints and the job's
    duration on METRICS_PORT; the API's /metrics has the jobs by status and the queue depth."""
    client = stack.client
    model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 4}).json()
    body = scenario.fit_body(epochs=3, callbacks=[])
    job = client.post(f"/v1/models/{model['id']}/fit", json=body).json()
    assert wait_for(client, job["id"], {"succeeded", "failed"})["status"] == "succeeded"
    url = f"http://127.0.0.1:{stack.metrics_port}/metrics"

    def observed() -> dict[str, Any] | None:
        scraped = families(httpx.get(url, timeout=5).text)
        done = value(scraped, "fitapi_job_duration_seconds_count", kind="fit", status="succeeded")
        return scraped if done >= 1 else None

    worker = poll(observed, "the job's duration in the worker's metrics")
    assert value(worker, "fitapi_epoch_duration_seconds_count") >= 3
    assert value(worker, "fitapi_train_samples_total") >= 3 * len(scenario.X)
    assert value(worker, "fitapi_checkpoint_write_seconds_count") >= 1
    assert "fitapi_worker_heartbeats" in worker
    api = families(client.get("/metrics").text)
    assert value(api, "fitapi_jobs", status="succeeded") >= 1
    assert "fitapi_queue_depth" in api
    assert value(api, "fitapi_http_requests_total", route="/v1/jobs/{job_id}") >= 1


def test_a_killed_worker_is_replaced_and_the_job_resumes_exactly(stack: Stack) -> None:
    client = stack.client
    # Killed 20 epochs in, then run again uninterrupted: long enough to be mid-fit at the kill.
    body = scenario.fit_body(epochs=100, callbacks=[], seed=5)
    first = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 2}).json()
    job = client.post(f"/v1/models/{first['id']}/fit", json=body).json()
    poll(lambda: client.get(f"/v1/jobs/{job['id']}").json()["epochs_done"] >= 20, "20 epochs")
    stack.workers[0].proc.send_signal(signal.SIGKILL)  # no goodbye: the lease just expires
    stack.workers[0].proc.wait()
    stack.workers.append(start_worker(stack.env, stack.tmp, name="worker2"))
    resumed = wait_for(client, job["id"], {"succeeded", "failed", "cancelled"}, timeout=180)
    assert resumed["status"] == "succeeded", resumed
    assert resumed["attempt"] == 2
    logs = client.get(f"/v1/jobs/{job['id']}/logs").json()["items"]
    assert [row["epoch"] for row in logs] == list(range(100))
    assert {row["attempt"] for row in logs} == {1, 2}

    # The same fit, uninterrupted, gives the same history and the same weights, bit for bit.
    second = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 2}).json()
    job2 = client.post(f"/v1/models/{second['id']}/fit", json=body).json()
    straight = wait_for(client, job2["id"], {"succeeded", "failed"}, timeout=180)
    assert straight["attempt"] == 1
    assert straight["history"] == resumed["history"]
    x = {"x": scenario.X.tolist()}
    p1 = client.post(f"/v1/models/{first['id']}/predict", json=x).json()
    p2 = client.post(f"/v1/models/{second['id']}/predict", json=x).json()
    assert p1 == p2


def test_a_finished_job_resumed_through_the_worker_continues_exactly(stack: Stack) -> None:
    client = stack.client
    first = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 2}).json()
    body = scenario.fit_body(epochs=15, callbacks=[], seed=5)
    parent = client.post(f"/v1/models/{first['id']}/fit", json=body).json()
    assert wait_for(client, parent["id"], {"succeeded", "failed"})["status"] == "succeeded"
    r = client.post(f"/v1/jobs/{parent['id']}/resume", json={"checkpoint": "epoch:9",
                                                              "epochs": 40})  # fmt: skip
    assert r.status_code == 202, r.text
    child = wait_for(client, r.json()["id"], {"succeeded", "failed", "cancelled"}, timeout=180)
    assert child["status"] == "succeeded" and child["parent_job_id"] == parent["id"], child

    second = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 2}).json()
    job2 = client.post(f"/v1/models/{second['id']}/fit", json={**body, "epochs": 40}).json()
    straight = wait_for(client, job2["id"], {"succeeded", "failed"}, timeout=180)
    assert child["history"] == {k: v[10:] for k, v in straight["history"].items()}
    x = {"x": scenario.X.tolist()}
    p1 = client.post(f"/v1/models/{first['id']}/predict", json=x).json()
    p2 = client.post(f"/v1/models/{second['id']}/predict", json=x).json()
    assert p1 == p2


def test_cancel_a_running_job(stack: Stack) -> None:
    client = stack.client
    model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 1}).json()
    body = scenario.fit_body(epochs=10_000, callbacks=[], batch_size=1)
    job = client.post(f"/v1/models/{model['id']}/fit", json=body).json()
    wait_for(client, job["id"], {"running"})
    r = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    done = wait_for(client, job["id"], {"cancelled", "failed", "succeeded"})
    assert done["status"] == "cancelled"
    assert done["epochs_done"] < 100_000
    # A cancelled fit leaves the model's weights as they were.
    assert client.get(f"/v1/models/{model['id']}").json()["weights_checkpoint_id"] is None


def test_second_fit_while_training_is_a_conflict(stack: Stack) -> None:
    client = stack.client
    model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 1}).json()
    body = scenario.fit_body(epochs=10_000, callbacks=[], batch_size=1)
    job = client.post(f"/v1/models/{model['id']}/fit", json=body).json()
    r = client.post(f"/v1/models/{model['id']}/fit", json=body)
    assert r.status_code == 409, r.text
    client.post(f"/v1/jobs/{job['id']}/cancel")
    wait_for(client, job["id"], {"cancelled"})


def test_a_fit_from_a_dataset_resumes_on_another_worker_exactly(stack: Stack) -> None:
    """Uploaded once, referenced by id; a worker killed mid-fit is replaced and the resumed
    attempt reads the same dataset: the same history and weights as the inline fit."""
    client = stack.client
    buf = io.BytesIO()
    np.savez(buf, x=scenario.X, y=scenario.Y)
    r = client.post("/v1/datasets", content=buf.getvalue(),
                    headers={"content-type": "application/x-npz"})  # fmt: skip
    assert r.status_code == 201, r.text
    ds = r.json()["id"]
    refs = {"x": {"dataset": ds, "array": "x"}, "y": {"dataset": ds, "array": "y"},
            "validation_data": {"x": {"dataset": ds, "array": "x"},
                                "y": {"dataset": ds, "array": "y"}}}  # fmt: skip
    body = {**scenario.fit_body(epochs=100, callbacks=[], seed=5), **refs}
    first = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 2}).json()
    job = client.post(f"/v1/models/{first['id']}/fit", json=body).json()
    poll(lambda: client.get(f"/v1/jobs/{job['id']}").json()["epochs_done"] >= 20, "20 epochs")
    assert client.delete(f"/v1/datasets/{ds}").status_code == 409  # read by a running job
    worker = stack.workers[-1]
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait()
    stack.workers.append(start_worker(stack.env, stack.tmp, name="worker3"))
    resumed = wait_for(client, job["id"], {"succeeded", "failed", "cancelled"}, timeout=180)
    assert resumed["status"] == "succeeded" and resumed["attempt"] == 2, resumed

    inline = scenario.fit_body(epochs=100, callbacks=[], seed=5)
    second = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 2}).json()
    job2 = client.post(f"/v1/models/{second['id']}/fit", json=inline).json()
    straight = wait_for(client, job2["id"], {"succeeded", "failed"}, timeout=180)
    assert straight["history"] == resumed["history"]
    w1 = client.get(f"/v1/models/{first['id']}/weights").content
    w2 = client.get(f"/v1/models/{second['id']}/weights").content
    assert w1 == w2
    assert client.delete(f"/v1/datasets/{ds}").status_code == 204
