"""A compile that lands while a fit is being checked, and train_on_batch where torch.compile is
unavailable: each answers with a 4xx naming the field, never a 500 or a fit under a stale spec."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.engine.config.errors import ConfigError
from app.engine.training import jit
from app.jobs import service
from tests.api.conftest import serve
from tests.support import scenario

ADAM = {**scenario.COMPILE, "optimizer": "adam"}


@pytest.fixture
def pg(pg_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    with serve(tmp_path, pg_url) as c:
        yield c, pg_url


def _compiled_model(client: TestClient) -> str:
    model_id = str(client.post("/v1/models", json={"config": scenario.MODEL}).json()["id"])
    r = client.post(f"/v1/models/{model_id}/compile", json=scenario.COMPILE)
    assert r.status_code == 200, r.text
    return model_id


def test_a_compile_during_a_fits_checks_is_a_conflict(
    pg: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, url = pg
    model_id = _compiled_model(client)
    original = service.compile_spec

    def compile_lands_meanwhile(row: Any, given: Any) -> Any:
        spec = original(row, given)
        engine = create_engine(url)  # another request's compile commits now
        with engine.begin() as conn:
            conn.execute(text("UPDATE models SET compile_config = :c WHERE id = :i"),
                         {"c": json.dumps(ADAM), "i": model_id})  # fmt: skip
        engine.dispose()
        return spec

    monkeypatch.setattr(service, "compile_spec", compile_lands_meanwhile)
    body = scenario.fit_body(epochs=1)
    del body["compile"]
    r = client.post(f"/v1/models/{model_id}/fit", json=body)
    assert r.status_code == 409, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "compile"]
    assert client.get("/v1/jobs").json()["items"] == []
    monkeypatch.setattr(service, "compile_spec", original)
    assert client.get(f"/v1/models/{model_id}").json()["compile"]["optimizer"] == "adam"


def test_train_on_batch_without_torch_compile_is_a_422(
    pg: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = pg
    model_id = _compiled_model(client)

    def unavailable(loc: Any) -> None:
        raise ConfigError(loc, "jit_compile=true needs torch.compile")

    monkeypatch.setattr(jit, "check_available", unavailable)
    body = {"x": scenario.X[:8].tolist(), "y": scenario.Y[:8].tolist(),
            "compile": {**scenario.COMPILE, "jit_compile": True}}  # fmt: skip
    for route in ("train_on_batch", "test_on_batch", "evaluate"):
        r = client.post(f"/v1/models/{model_id}/{route}", json=body)
        assert r.status_code == 422, (route, r.text)
        assert r.json()["detail"][0]["loc"] == ["body", "compile", "jit_compile"], route
