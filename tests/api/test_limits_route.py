"""Model creation is a dry run: a model of a trillion weights is a 422 stating the count and the
limit, at once and without allocating; the limits come from settings."""

from __future__ import annotations

from fastapi.testclient import TestClient


def _dense(units: int, inputs: int) -> dict:
    return {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, inputs]}},
        {"class_name": "Dense", "config": {"units": units}},
    ]}}  # fmt: skip


def test_a_huge_model_is_refused_by_the_dry_run(client: TestClient) -> None:
    r = client.post("/v1/models", json={"config": _dense(1 << 20, 1 << 20)})
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "config", "config", "layers"]
    assert detail["msg"] == "the model has 1099512676352 parameters; the limit is 50000000"
    ok = client.post("/v1/models", json={"config": _dense(1000, 1000)})
    assert ok.status_code == 201 and ok.json()["summary"]["total_params"] == 1_001_000
