"""predict answered without FastAPI's routing (app.api.direct_routes) answers as the route
does through routing: the same status, body and headers, for answers and for errors, and the
same audit rows and metrics labels."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.direct_routes import DirectRoutes
from app.core.config import Settings
from app.main import create_app
from tests.support import scenario

NPY = "application/x-npy"
VARYING = {"x-request-id", "date", "content-length"}


def _npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    return buf.getvalue()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """The app, and the same app (the same database and files) without DirectRoutes."""
    settings = Settings(data_dir=tmp_path, database_url=None, redis_url=None,
                        max_request_bytes=200_000)  # fmt: skip
    direct = create_app(settings)
    routed = create_app(settings)
    routed.user_middleware = [m for m in routed.user_middleware if m.cls is not DirectRoutes]
    assert len(routed.user_middleware) == len(direct.user_middleware) - 1
    with TestClient(direct) as a, TestClient(routed) as b:
        yield a, b


def _same(a: Any, b: Any) -> None:
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.content == b.content
    heads_a = {k: v for k, v in a.headers.items() if k not in VARYING}
    heads_b = {k: v for k, v in b.headers.items() if k not in VARYING}
    assert heads_a == heads_b


def test_direct_predict_answers_as_routing_does(pair: tuple[TestClient, TestClient]) -> None:
    direct, routed = pair
    model_id = direct.post("/v1/models", json={"config": scenario.MODEL, "seed": 3}).json()["id"]
    path = f"/v1/models/{model_id}/predict"
    x = scenario.X[:5]
    requests: list[dict[str, Any]] = [
        {"json": {"x": x.tolist()}},
        {"json": {"x": x.tolist(), "batch_size": 2}},
        {"content": _npy(x), "headers": {"Content-Type": NPY, "Accept": NPY}},
        {"content": _npy(x), "headers": {"Content-Type": NPY}},
        {"content": _npy(x.astype(">f4")), "headers": {"Content-Type": NPY}},
        # Errors: each the route's own.
        {"json": {"x": x.tolist(), "colour": 1}},
        {"content": b'{"x": [[1.0]', "headers": {"Content-Type": "application/json"}},
        {"content": b'{"x": [[NaN]]}', "headers": {"Content-Type": "application/json"}},
        {"json": {"x": [[1.0, 2.0]]}},
        {"json": {"x": x.tolist(), "checkpoint": "latest"}},
        {"content": b"\x93NUMPY garbage", "headers": {"Content-Type": NPY}},
        {"content": _npy(np.zeros((60_000, 1), np.float32)), "headers": {"Content-Type": NPY}},
        {"content": b"x,y\n", "headers": {"Content-Type": "text/csv"}},
    ]
    for req in requests:
        _same(direct.post(path, **req), routed.post(path, **req))
    for other in ("/v1/models/not-a-uuid/predict",
                  "/v1/models/00000000-0000-0000-0000-000000000000/predict",
                  f"/v1/models/{model_id.upper()}/predict"):  # fmt: skip
        _same(direct.post(other, json={"x": [[1.0]]}), routed.post(other, json={"x": [[1.0]]}))
    # The audit rows and the metrics name the route, as routing does.
    items = direct.get("/v1/admin/audit?limit=200").json()["items"]
    routes = {i["route"] for i in items if i["action"] == "predict"}
    assert routes == {"POST /v1/models/{model_id}/predict"}
    metrics = direct.get("/metrics").text
    assert 'route="/v1/models/{model_id}/predict"' in metrics
