"""API keys from the admin command and routes, the single-user mode and AUTH_REQUIRED, per-project
quotas (409 or 429 naming the quota, its limit and its use), and the audit log."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.auth.tokens import digest
from tests.api.conftest import serve
from tests.e2e.harness import poll
from tests.support import scenario

ROOT = Path(__file__).resolve().parents[2]
XY = {"x": [[0.5], [1.5]], "y": [0.0, 1.0]}


def _admin(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATA_DIR": str(tmp_path), "DATABASE_URL": "", "REDIS_URL": ""}
    return subprocess.run([sys.executable, "-m", "app.admin", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _npy(rows: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((rows, 1), np.float32))
    return buf.getvalue()


def test_the_admin_command_creates_a_key_the_server_accepts(tmp_path: Path) -> None:
    made = _admin(tmp_path, "keys", "create", "--project", "vision", "--role", "member")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("fitapi_") and len(token) > 40
    listed = _admin(tmp_path, "keys", "list")
    assert listed.returncode == 0 and token not in listed.stdout and '"vision"' in listed.stdout
    bad = _admin(tmp_path, "keys", "create", "--project", "Bad Name", "--role", "member")
    assert bad.returncode == 2 and "project" in bad.stderr
    with serve(tmp_path, None) as client:  # the same DATA_DIR: authentication is on
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers=_bearer(token)).status_code == 200
        assert client.post("/v1/admin/keys", headers=_bearer(token),
                           json={"project": "x", "role": "admin"}).status_code == 403  # fmt: skip
        # Only the token's sha256 is stored.
        ctx = client.app.state.ctx  # type: ignore[attr-defined]
        with ctx.engine.connect() as conn:
            stored = conn.exec_driver_sql("SELECT token_sha256, prefix FROM api_keys").one()
        assert stored[0] == digest(token) and token.startswith(stored[1] + "_")
    prefix = stored[1]
    revoked = _admin(tmp_path, "keys", "revoke", prefix)
    assert revoked.returncode == 0, revoked.stderr
    with serve(tmp_path, None) as client:
        assert client.get("/v1/models", headers=_bearer(token)).status_code == 401
        # Revoking the last key does not switch authentication off.
        assert client.get("/v1/models").status_code == 401


def test_single_user_mode_says_so_and_auth_required_turns_it_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING"), serve(tmp_path / "a", None) as client:
        assert client.get("/v1/models").status_code == 200
        assert "Single-user mode" in client.get("/openapi.json").json()["info"]["description"]
    assert any("single-user mode" in r.getMessage() for r in caplog.records)
    with serve(tmp_path / "b", None, auth_required=True) as client:
        r = client.get("/v1/models")
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Single-user mode" not in client.get("/openapi.json").json()["info"]["description"]


def _member(client: TestClient, project: str = "q") -> dict[str, str]:
    r = client.post("/v1/admin/keys", json={"project": project, "role": "member"},
                    headers=getattr(client, "admin", {}))  # fmt: skip
    assert r.status_code == 201, r.text
    return _bearer(r.json()["token"])


@pytest.fixture
def client(tmp_path: Path) -> Any:
    quotas = {"quota_requests_per_s": 0, "quota_models": 2, "quota_stored_bytes": 10_000,
              "quota_queued_jobs": 1, "quota_running_jobs": 0}  # fmt: skip
    with serve(tmp_path, None, **quotas) as c:
        admin = c.post("/v1/admin/keys", json={"project": "ops", "role": "admin"})
        c.admin = _bearer(admin.json()["token"])  # type: ignore[attr-defined]
        yield c


def test_quotas_name_the_quota_its_limit_and_its_use(client: TestClient) -> None:
    h = _member(client)
    ids = [client.post("/v1/models", json={"config": scenario.MODEL}, headers=h).json()["id"]
           for _ in range(2)]  # fmt: skip
    r = client.post("/v1/models", json={"config": scenario.MODEL}, headers=h)
    assert r.status_code == 409, r.text
    assert r.json()["detail"][0]["loc"] == ["quota", "models"]
    assert "limit 2, in use 2" in r.json()["detail"][0]["msg"]
    # Another project has its own count.
    assert client.post("/v1/models", json={"config": scenario.MODEL},
                       headers=_member(client, "other")).status_code == 201  # fmt: skip
    # Queued jobs: running_jobs 0 keeps the first one queued; the second is a 429.
    fit = {**XY, "epochs": 1, "compile": scenario.COMPILE}
    first = client.post(f"/v1/models/{ids[0]}/fit", json=fit, headers=h)
    assert first.status_code == 202, first.text
    second = client.post(f"/v1/models/{ids[1]}/fit", json=fit, headers=h)
    assert second.status_code == 429 and second.headers["Retry-After"].isdigit(), second.text
    assert second.json()["detail"][0]["loc"] == ["quota", "queued_jobs"]
    time.sleep(0.3)  # the executor had its chance: over the running quota, the job waits
    assert client.get(f"/v1/jobs/{first.json()['id']}", headers=h).json()["status"] == "queued"
    # Stored bytes: an upload past 10,000 bytes in all.
    small = client.post("/v1/datasets", content=_npy(1000),
                        headers={**h, "Content-Type": "application/x-npy"})  # fmt: skip
    assert small.status_code == 201, small.text
    big = client.post("/v1/datasets", content=_npy(2000),
                      headers={**h, "Content-Type": "application/x-npy"})  # fmt: skip
    assert big.status_code == 409 and big.json()["detail"][0]["loc"] == ["quota", "stored_bytes"]
    # An admin raises the project's quota; the listing shows quotas and usage.
    r = client.patch("/v1/admin/projects/q/quotas", json={"models": 5, "stored_bytes": None},
                     headers=client.admin)  # type: ignore[attr-defined]  # fmt: skip
    assert r.status_code == 200 and r.json()["quotas"]["models"] == 5, r.text
    assert r.json()["usage"]["models"] == 2 and r.json()["overrides"] == {"models": 5}
    assert client.post("/v1/models", json={"config": scenario.MODEL}, headers=h).status_code == 201
    assert (
        client.patch("/v1/admin/projects/q/quotas", json={"models": 5}, headers=h).status_code
        == 403
    )
    projects = client.get("/v1/admin/projects", headers=client.admin).json()["items"]  # type: ignore[attr-defined]
    assert {p["name"] for p in projects} >= {"default", "ops", "q", "other"}


def test_the_request_rate_is_limited_per_project(tmp_path: Path) -> None:
    with serve(tmp_path, None, quota_requests_per_s=1, quota_burst=3) as client:
        answers = [client.get("/v1/models").status_code for _ in range(5)]
        assert answers[:3] == [200, 200, 200] and answers[3] == 429
        r = client.get("/v1/models")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert r.json()["detail"][0]["loc"] == ["quota", "requests_per_s"]
        assert client.get("/healthz").status_code == 200


def test_the_audit_log_records_who_did_what(client: TestClient) -> None:
    h = _member(client)
    model = client.post("/v1/models", json={"config": scenario.MODEL}, headers=h).json()["id"]
    assert client.get(f"/v1/models/{model}", headers=h).status_code == 200  # a read: not logged
    assert client.get(f"/v1/models/{model}/weights", headers=h).status_code == 200
    assert client.delete(f"/v1/models/{model}", headers=h).status_code == 204
    assert client.get("/v1/admin/audit", headers=h).status_code == 403
    page = client.get("/v1/admin/audit?limit=2", headers=client.admin).json()  # type: ignore[attr-defined]
    assert [e["action"] for e in page["items"]] == ["delete", "download"]
    assert all(e["resource_id"] == model and e["resource_type"] == "models" for e in page["items"])
    assert page["items"][0]["route"] == "DELETE /v1/models/{model_id}"
    assert (
        page["items"][0]["key_prefix"].startswith("fitapi_")
        and page["items"][0]["role"] == "member"
    )
    rest = client.get(f"/v1/admin/audit?before_id={page['next_before_id']}",
                      headers=client.admin).json()["items"]  # type: ignore[attr-defined]  # fmt: skip
    actions = [(e["action"], e["resource_type"]) for e in rest]
    assert ("create", "models") in actions and ("create", "keys") in actions
    created = next(e for e in rest if e["action"] == "create" and e["resource_type"] == "models")
    assert created["resource_id"] == model


def test_a_job_over_the_running_quota_waits_and_starts_when_a_slot_frees(tmp_path: Path) -> None:
    # The reaper would only re-dispatch after an hour: the finishing job wakes the waiting one.
    settings = {"quota_running_jobs": 1, "local_workers": 2, "job_orphaned_after_s": 3600}
    with serve(tmp_path, None, **settings) as client:
        fit = {**XY, "epochs": 30, "compile": scenario.COMPILE}
        models = [client.post("/v1/models", json={"config": scenario.MODEL}).json()["id"]
                  for _ in range(2)]  # fmt: skip
        jobs = [client.post(f"/v1/models/{m}/fit", json=fit).json()["id"] for m in models]

        def states() -> list[str]:  # one query, so both statuses are of the same moment
            listed = {j["id"]: j["status"] for j in client.get("/v1/jobs").json()["items"]}
            return [listed[j] for j in jobs]

        def both_done() -> bool:
            now = states()
            assert now.count("running") <= 1, now
            return now == ["succeeded", "succeeded"]

        poll(both_done, "both jobs' end", timeout=120, every=0.02)


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_concurrent_creations_cannot_pass_a_quota(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from app.core.errors import QuotaExceeded
    from app.db.models import DEFAULT_PROJECT_ID
    from app.db.scope import Scope
    from app.models import service as models
    from app.models.schemas import ModelCreate

    url = request.getfixturevalue("pg_url") if database == "postgres" else None
    with serve(tmp_path, url, quota_models=2) as client:
        ctx = client.app.state.ctx  # type: ignore[attr-defined]
        scope = Scope.of_project(DEFAULT_PROJECT_ID)

        def create(_: int) -> str:
            try:
                models.create_model(ctx, scope=scope, body=ModelCreate(config=scenario.MODEL))
                return "created"
            except QuotaExceeded:
                return "refused"

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(create, range(16)))
        assert outcomes.count("created") == 2, outcomes
        assert client.get("/v1/models").json()["total"] == 2


def test_audit_times_and_concurrent_first_keys_are_not_500s(client: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from app.auth import service
    from app.db.models import Role

    admin = client.admin  # type: ignore[attr-defined]
    cases = (("2026-01-01T00:00:00", 422), ("9999-12-31T23:59:59-10:00", 422),
             ("0001-01-01T00:00:00+10:00", 422), ("2026-01-01T00:00:00Z", 200))  # fmt: skip
    for since, status in cases:
        r = client.get("/v1/admin/audit", params={"since": since}, headers=admin)
        assert r.status_code == status, (since, r.text)
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: service.create_key(
            ctx, project="fresh", role=Role.viewer, name=None), range(8)))  # fmt: skip
    assert len({k.token for k in made}) == 8 and {k.project for k in made} == {"fresh"}


def _compressed_zeros(n: int) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.zeros((n, 1), np.float32))
    return buf.getvalue()


def test_compressed_uploads_count_what_they_unpack_to(tmp_path: Path) -> None:
    with serve(tmp_path, None, quota_stored_bytes=10_000_000) as client:
        zeros = _compressed_zeros(10_000_000)  # 40 MB as stored, about 40 KB sent
        assert len(zeros) < 100_000
        r = client.post("/v1/datasets", content=zeros,
                        headers={"Content-Type": "application/x-npz"})  # fmt: skip
        assert r.status_code == 409 and r.json()["detail"][0]["loc"] == ["quota", "stored_bytes"]
        ok = client.post("/v1/datasets", content=_compressed_zeros(1_000_000),
                         headers={"Content-Type": "application/x-npz"})  # fmt: skip
        assert ok.status_code == 201, ok.text
        projects = client.get("/v1/admin/projects").json()["items"]
        used = next(p for p in projects if p["name"] == "default")["usage"]["stored_bytes"]
        assert used == 4_000_000
        # A predict body unpacks to at most 4 x MAX_REQUEST_BYTES (2 MB here), not a dataset's.
        model = client.post("/v1/models", json={"config": scenario.MODEL}).json()["id"]
        r = client.post(f"/v1/models/{model}/predict", content=_compressed_zeros(3_000_000),
                        headers={"Content-Type": "application/x-npz"})  # fmt: skip
        assert r.status_code == 413, r.text
