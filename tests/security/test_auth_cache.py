"""AUTH_CACHE_S: an API process trusts a key it has checked for that long, so a request reads
no key from the database; changes made through the process itself take effect at once, changes
made elsewhere (the admin command, another replica: here a direct write to the database)
within AUTH_CACHE_S."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from app.auth.tokens import digest
from tests.api.conftest import serve
from tests.support.statements import selects


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _key_reads(client: TestClient) -> Any:
    """The statements that read api_keys while inside."""
    return selects(client.app.state.ctx.engine, "api_keys")  # type: ignore[attr-defined]


def _revoke_elsewhere(client: TestClient, token: str) -> None:
    """What another process's revoke does: the row changes, this process is not told."""
    engine = client.app.state.ctx.engine  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(text("UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP "
                          "WHERE token_sha256 = :d"), {"d": digest(token)})  # fmt: skip


def _new_key(client: TestClient, admin: dict[str, str]) -> str:
    return _key_and_prefix(client, admin)[0]


def _key_and_prefix(client: TestClient, admin: dict[str, str]) -> tuple[str, str]:
    r = client.post("/v1/admin/keys", json={"project": "p", "role": "member"}, headers=admin)
    assert r.status_code == 201, r.text
    return str(r.json()["token"]), str(r.json()["prefix"])


def test_a_checked_key_is_not_read_again_within_the_cache_time(tmp_path: Path) -> None:
    with serve(tmp_path, None, auth_cache_s=60.0) as client:
        admin = _bearer(client.post("/v1/admin/keys", json={"project": "ops", "role": "admin"})
                        .json()["token"])  # fmt: skip
        token = _new_key(client, admin)
        with _key_reads(client) as reads:
            for _ in range(5):
                assert client.get("/v1/models", headers=_bearer(token)).status_code == 200
        assert len(reads) == 1
        # An unknown token is not kept: each is read (and refused).
        with _key_reads(client) as reads:
            for _ in range(3):
                r = client.get("/v1/models", headers=_bearer("fitapi_" + "x" * 40))
                assert r.status_code == 401
        assert len(reads) == 3


def test_changes_through_this_process_take_effect_at_once(tmp_path: Path) -> None:
    with serve(tmp_path, None, auth_cache_s=60.0, quota_requests_per_s=0, quota_burst=1) as client:
        # Single-user: "no key" is kept too, and creating the first key ends it at once.
        assert client.get("/v1/models").status_code == 200
        admin = _bearer(client.post("/v1/admin/keys", json={"project": "ops", "role": "admin"})
                        .json()["token"])  # fmt: skip
        assert client.get("/v1/models").status_code == 401
        token, prefix = _key_and_prefix(client, admin)
        assert client.get("/v1/models", headers=_bearer(token)).status_code == 200
        r = client.post(f"/v1/admin/keys/{prefix}/revoke", headers=admin)
        assert r.status_code == 200, r.text
        assert client.get("/v1/models", headers=_bearer(token)).status_code == 401
        # A quota set here applies to the next request of a key already checked.
        member = _new_key(client, admin)
        assert client.get("/v1/models", headers=_bearer(member)).status_code == 200
        r = client.patch("/v1/admin/projects/p/quotas", json={"requests_per_s": 0.001},
                         headers=admin)  # fmt: skip
        assert r.status_code == 200, r.text
        codes = [client.get("/v1/models", headers=_bearer(member)).status_code for _ in range(3)]
        assert 429 in codes


def test_a_change_made_elsewhere_takes_effect_within_the_cache_time(tmp_path: Path) -> None:
    ttl = 0.3
    with serve(tmp_path, None, auth_cache_s=ttl) as client:
        admin = _bearer(client.post("/v1/admin/keys", json={"project": "ops", "role": "admin"})
                        .json()["token"])  # fmt: skip
        token = _new_key(client, admin)
        assert client.get("/v1/models", headers=_bearer(token)).status_code == 200
        _revoke_elsewhere(client, token)
        time.sleep(ttl * 1.5)
        assert client.get("/v1/models", headers=_bearer(token)).status_code == 401


def test_no_cache_reads_the_key_on_every_request(tmp_path: Path) -> None:
    with serve(tmp_path, None, auth_cache_s=0.0) as client:
        admin = _bearer(client.post("/v1/admin/keys", json={"project": "ops", "role": "admin"})
                        .json()["token"])  # fmt: skip
        token = _new_key(client, admin)
        assert client.get("/v1/models", headers=_bearer(token)).status_code == 200
        _revoke_elsewhere(client, token)
        assert client.get("/v1/models", headers=_bearer(token)).status_code == 401
