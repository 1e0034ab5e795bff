"""Small helpers the security tests share (conftest.py bounds every test in time)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support import scenario


def total(client: TestClient, what: str = "models") -> int:
    """How many models (or datasets) the listing counts."""
    r = client.get(f"/v1/{what}")
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def new_model(client: TestClient) -> str:
    r = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 1})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])
