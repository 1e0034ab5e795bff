"""The scenario through uvicorn and a real Celery worker, on Postgres and Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.e2e.harness import start_api, start_worker
from tests.e2e.scenario_checks import run_scenario, wait_for
from tests.support import scenario

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(
    pg_database: Callable[[], str], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("distributed")
    env = {
        "DATABASE_URL": pg_database(),
        "REDIS_URL": redis_url,
        "CELERY_QUEUE": f"fitapi-test-{uuid.uuid4().hex[:8]}",
        "DATA_DIR": str(tmp / "data"),
        "JOB_HEARTBEAT_S": "0.2",
    }
    api, base = start_api(env, tmp)
    worker = start_worker(env, tmp)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            yield client
    finally:
        worker.stop()
        api.stop()


def test_scenario_through_celery_worker(stack: httpx.Client) -> None:
    run_scenario(stack)


def test_cancel_a_running_job(stack: httpx.Client) -> None:
    model = stack.post("/v1/models", json={"config": scenario.MODEL, "seed": 1}).json()
    body = scenario.fit_body(epochs=100_000, callbacks=[])
    job = stack.post(f"/v1/models/{model['id']}/fit", json=body).json()
    wait_for(stack, job["id"], {"running"})
    r = stack.post(f"/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    done = wait_for(stack, job["id"], {"cancelled", "failed", "succeeded"})
    assert done["status"] == "cancelled"
    assert done["epochs_done"] < 100_000
    # A cancelled fit leaves the model's weights as they were.
    assert stack.get(f"/v1/models/{model['id']}").json()["weights_checkpoint_id"] is None


def test_second_fit_while_training_is_a_conflict(stack: httpx.Client) -> None:
    model = stack.post("/v1/models", json={"config": scenario.MODEL, "seed": 1}).json()
    body = scenario.fit_body(epochs=100_000, callbacks=[])
    job = stack.post(f"/v1/models/{model['id']}/fit", json=body).json()
    r = stack.post(f"/v1/models/{model['id']}/fit", json=body)
    assert r.status_code == 409, r.text
    stack.post(f"/v1/jobs/{job['id']}/cancel")
    wait_for(stack, job["id"], {"cancelled"})
