"""Operators' view of the API in process: /metrics (parsed with the Prometheus client's own
parser), /readyz, X-Request-ID, and JSON log lines carrying request and job ids."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.core.logging import FIELDS, bind, current, log_context, make_handler
from app.main import create_app
from tests.api.conftest import serve
from tests.e2e.harness import poll
from tests.support import scenario
from tests.support.prometheus import families, value

X = [[0.5], [1.5], [2.5], [3.5]]
Y = [0.0, 0.0, 1.0, 1.0]
# A closed port: nothing listens on 1 here, so a connection is refused at once.
UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:1/fitapi"


def scrape(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = client.get("/metrics", headers=headers or {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return families(r.text)


def fit(client: TestClient, epochs: int = 2) -> tuple[str, str]:
    model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 1}).json()["id"]
    body = {"compile": scenario.COMPILE, "x": X, "y": Y, "epochs": epochs, "batch_size": 2}
    r = client.post(f"/v1/models/{model}/fit", json=body)
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    poll(lambda: client.get(f"/v1/jobs/{job}").json()["status"] == "succeeded", "the fit")
    return model, job


def test_metrics_count_requests_by_route_template_and_show_the_jobs(
    client: TestClient,
) -> None:
    before = scrape(client)
    model, job = fit(client)
    client.get(f"/v1/models/{model}")
    client.get("/v1/models/00000000-0000-0000-0000-000000000000")  # a 404 of the same route
    client.get("/no/such/path")

    # The job's duration is observed just after its row says succeeded.
    duration = {"kind": "fit", "status": "succeeded"}
    counted = value(before, "fitapi_job_duration_seconds_count", **duration)

    def observed() -> dict[str, Any] | None:
        now = scrape(client)
        return (
            now if value(now, "fitapi_job_duration_seconds_count", **duration) > counted else None
        )

    after = poll(observed, "the job's duration observed")

    route = "/v1/models/{model_id}"
    assert value(after, "fitapi_http_requests_total", method="GET", route=route, status="200") >= 1
    assert value(after, "fitapi_http_requests_total", method="GET", route=route, status="404") >= 1
    assert value(after, "fitapi_http_requests_total", route="unmatched", status="404") >= 1
    fits = {"method": "POST", "route": "/v1/models/{model_id}/fit", "status": "202"}
    assert value(after, "fitapi_http_request_duration_seconds_count", **fits) >= 1
    # Templates only: no id in any label.
    for family in after.values():
        for s in family.samples:
            assert not any(model in v or job in v for v in s.labels.values()), s

    assert value(after, "fitapi_jobs", status="succeeded") >= 1
    assert {s.labels["status"] for s in after["fitapi_jobs"].samples} == {
        "queued", "running", "succeeded", "failed", "cancelled"}  # fmt: skip
    assert value(after, "fitapi_queue_depth") == 0
    for sample, grew_by in (("fitapi_epoch_duration_seconds_count", 2),
                            ("fitapi_train_samples_total", 2 * len(X)),
                            ("fitapi_checkpoint_write_seconds_count", 1)):  # fmt: skip
        assert value(after, sample) - value(before, sample) >= grew_by, sample
    assert value(after, "fitapi_train_samples_per_second") > 0
    assert {s.labels["action"] for s in after["fitapi_reaper_actions"].samples} >= {
        "redispatched", "cancelled", "failed"}  # fmt: skip
    assert "fitapi_worker_heartbeats" in after


def test_metrics_need_an_admin_key_once_keys_are_required(tmp_path: Path) -> None:
    with serve(tmp_path / "a", None, quota_requests_per_s=0) as client:
        scrape(client)  # single-user: open
        admin = client.post("/v1/admin/keys", json={"project": "ops", "role": "admin"}).json()
        as_admin = {"Authorization": f"Bearer {admin['token']}"}
        member = client.post("/v1/admin/keys", json={"project": "ops", "role": "member"},
                             headers=as_admin).json()  # fmt: skip
        assert client.get("/metrics").status_code == 401
        r = client.get("/metrics", headers={"Authorization": f"Bearer {member['token']}"})
        assert r.status_code == 403, r.text
        scraped = scrape(client, as_admin)
        # Refused before routing, and still counted under its route's template.
        assert value(scraped, "fitapi_http_requests_total", route="/metrics", status="401") == 1
        # Probes stay open.
        assert client.get("/readyz").status_code == 200
        assert client.get("/healthz").status_code == 200
    with serve(tmp_path / "b", None, auth_required=True, metrics_public=True) as client:
        scrape(client)
        assert client.get("/v1/models").status_code == 401


def test_readyz_reports_each_check(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "artifacts": "ok"}}
    # The store's probe file is gone again.
    artifacts = Path(client.app.state.ctx.store.root)  # type: ignore[attr-defined]
    assert not list(artifacts.glob(".tmp-ready-*"))


def test_readyz_checks_the_broker_in_distributed_mode(
    pg_url: str, redis_url: str, tmp_path: Path
) -> None:
    queue = f"fitapi-test-{uuid.uuid4().hex[:8]}"
    up = Settings(data_dir=tmp_path / "up", database_url=pg_url, redis_url=redis_url,
                  celery_queue=queue)  # fmt: skip
    with TestClient(create_app(up)) as client:
        r = client.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json()["checks"] == {"database": "ok", "broker": "ok", "artifacts": "ok"}
        assert value(scrape(client), "fitapi_queue_depth") == 0  # the queue's Redis lists
    down = Settings(data_dir=tmp_path / "down", redis_url="redis://127.0.0.1:1/0",
                    celery_queue=queue, readiness_timeout_s=5)  # fmt: skip
    with TestClient(create_app(down)) as client:
        r = client.get("/readyz")
        assert r.status_code == 503, r.text
        assert r.json()["failed"] == ["broker"]
        assert r.json()["checks"]["database"] == "ok"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every record at INFO and above, as the JSON handler writes it."""
    stream = io.StringIO()
    handler = make_handler("json", stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_readyz_is_503_naming_the_database_when_it_is_unreachable(
    tmp_path: Path, json_log: io.StringIO
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=UNREACHABLE_PG, redis_url=None,
                        migrate_on_start=False)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").status_code == 200  # liveness does no I/O
        r = client.get("/readyz", headers={"X-Request-ID": "probe-1"})
    assert r.status_code == 503, r.text
    assert r.json() == {"status": "not_ready", "failed": ["database"],
                        "checks": {"database": "failed", "artifacts": "ok"}}  # fmt: skip
    assert r.headers["X-Request-ID"] == "probe-1"
    # What failed is in the log, under the request's id; never in the response.
    failed = [e for e in lines(json_log) if e["message"] == "readiness check database failed"]
    assert failed and failed[0]["request_id"] == "probe-1" and "127.0.0.1" in failed[0]["exc"]
    assert failed[0]["level"] == "WARNING" and failed[0]["logger"] == "app.runtime.readiness"


def test_a_request_while_the_database_is_unreachable_is_a_503_to_retry(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=UNREACHABLE_PG, redis_url=None,
                        migrate_on_start=False)  # fmt: skip
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        r = client.get("/v1/models", headers={"X-Request-ID": "retry-1"})
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "1" and r.headers["X-Request-ID"] == "retry-1"
    assert r.json()["detail"][0]["type"] == "unavailable"
    assert "127.0.0.1" not in r.text and "SELECT" not in r.text


def test_a_job_logs_its_id_attempt_and_worker(client: TestClient, json_log: io.StringIO) -> None:
    _, job = fit(client, epochs=1)
    ended = poll(lambda: next((e for e in lines(json_log)
                               if e.get("job_id") == job and "ended" in e["message"]), None),
                 "the job's end logged")  # fmt: skip
    assert ended["attempt"] == 1 and ended["worker"].count(":") == 2
    assert "request_id" not in ended  # the executor's thread has no request's context


def test_request_ids_are_honoured_generated_and_returned_on_errors(tmp_path: Path) -> None:
    with serve(tmp_path, None, max_request_bytes=1000) as client:
        r = client.get("/healthz", headers={"X-Request-ID": "abc-123.x:y"})
        assert r.headers["X-Request-ID"] == "abc-123.x:y"
        generated = client.get("/healthz").headers["X-Request-ID"]
        assert len(generated) == 32 and int(generated, 16) >= 0
        assert client.get("/healthz").headers["X-Request-ID"] != generated
        for bad in ("x" * 129, "a b", "<script>", "a;b"):
            got = client.get("/healthz", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
            assert got != bad and len(got) == 32
        # Errors: a 404, a 422, a 413 refused by a middleware before routing, a 500.
        r = client.get("/no/such/path", headers={"X-Request-ID": "e1"})
        assert r.status_code == 404 and r.headers["X-Request-ID"] == "e1"
        r = client.post("/v1/models", json={"config": 1}, headers={"X-Request-ID": "e2"})
        assert r.status_code == 422 and r.headers["X-Request-ID"] == "e2"
        r = client.post("/v1/models", content=b"x" * 2000, headers={
            "X-Request-ID": "e3", "Content-Type": "application/json"})  # fmt: skip
        assert r.status_code == 413 and r.headers["X-Request-ID"] == "e3"

        def boom() -> None:
            raise RuntimeError("a secret server detail")

        client.app.add_api_route("/boom", boom)  # type: ignore[attr-defined]
        quiet = TestClient(client.app, raise_server_exceptions=False)
        r = quiet.get("/boom", headers={"X-Request-ID": "e4"})
        assert r.status_code == 500 and r.headers["X-Request-ID"] == "e4"
        assert "secret" not in r.text
        families = scrape(client)
        assert value(families, "fitapi_http_requests_total", route="/boom", status="500") == 1


def test_log_context_is_undone_on_leaving_it() -> None:
    before = {name: current(name) for name in FIELDS}
    with log_context(job_id="j", attempt=None, worker=None, request_id=None):
        bind(attempt=2, worker="h:1:2")
        stream = io.StringIO()
        logger = logging.getLogger("fitapi.test.context")
        logger.addHandler(make_handler("text", stream))
        logger.warning("inside")
        logger.handlers.clear()
        assert stream.getvalue().rstrip().endswith("inside [job_id=j attempt=2 worker=h:1:2]")
    assert {name: current(name) for name in FIELDS} == before
