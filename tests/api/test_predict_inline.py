"""Small predicts on the embedded database run on the event loop (inference_jobs.runs_inline):
the lane's answers bit for bit, and a change committed through another connection (another
process) is seen by the next predict (DataVersion)."""

from __future__ import annotations

import io
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from app.core.config import Settings
from app.db.session import DataVersion
from app.main import create_app
from tests.support import scenario


def _app(tmp_path: Path, **settings: Any) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path, database_url=None, redis_url=None,
                                          **settings)))  # fmt: skip


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """Two apps on one SQLite file, as two processes would be; the second never predicts on
    its event loop."""
    with _app(tmp_path) as a, _app(tmp_path, predict_inline_max_cost=0) as b:
        yield a, b


def _lane_runs(client: TestClient) -> list[int]:
    """Counts the predicts the app's lane is given from now on."""
    lane = client.app.state.predict_lane  # type: ignore[attr-defined]
    runs: list[int] = []
    given = lane.run

    async def counted(*args: Any, **kwargs: Any) -> Any:
        runs.append(1)
        return await given(*args, **kwargs)

    lane.run = counted
    return runs


def _predict_path(client: TestClient) -> str:
    model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 3}).json()
    return f"/v1/models/{model['id']}/predict"


def _weights(client: TestClient, model_id: str) -> list[np.ndarray]:
    with np.load(io.BytesIO(client.get(f"/v1/models/{model_id}/weights").content)) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


def test_small_predicts_run_here_with_the_lanes_answers(
    pair: tuple[TestClient, TestClient],
) -> None:
    here, lane_only = pair
    path = _predict_path(here)
    x = scenario.X[::7].tolist()
    first = here.post(path, json={"x": x})  # builds the model: on the lane
    runs = _lane_runs(here)
    again = [here.post(path, json={"x": x}) for _ in range(3)]
    npy = io.BytesIO()
    np.save(npy, np.asarray(x, np.float32))
    binary = here.post(path, content=npy.getvalue(), headers={"Content-Type": "application/x-npy"})
    assert runs == [], "a small predict on a cached model runs on the event loop"
    on_lane = lane_only.post(path, json={"x": x})
    for r in (first, *again, on_lane):
        assert r.status_code == 200 and r.content == on_lane.content
    assert binary.status_code == 200 and binary.content == on_lane.content
    # Past PREDICT_INLINE_MAX_COST (9,000 rows of at least four elements each): the lane.
    big = here.post(path, json={"x": np.resize(scenario.X, (9000, 1)).tolist()})
    assert big.status_code == 200 and runs == [1]


def test_a_change_committed_elsewhere_is_seen_by_the_next_predict(
    pair: tuple[TestClient, TestClient],
) -> None:
    here, elsewhere = pair
    path = _predict_path(here)
    model_id = path.split("/")[3]
    x = scenario.X[::50].tolist()
    before = [here.post(path, json={"x": x}).content for _ in range(2)]
    changed = [(w * 0.5 + 0.25).tolist() for w in _weights(elsewhere, model_id)]
    r = elsewhere.put(f"/v1/models/{model_id}/weights", json={"weights": changed})
    assert r.status_code == 200, r.text
    expected = elsewhere.post(path, json={"x": x}).content
    assert expected != before[0]
    runs = _lane_runs(here)
    assert [here.post(path, json={"x": x}).content for _ in range(2)] == [expected] * 2
    # The first after the change read the state and built the model on the lane, never on
    # the event loop; the second ran on the loop.
    assert runs == [1]
    assert elsewhere.delete(f"/v1/models/{model_id}").status_code == 204
    assert here.post(path, json={"x": x}).status_code == 404


def test_data_version_changes_with_other_connections_commits(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE t (v INTEGER)")
    versions = DataVersion(str(path))
    v0 = versions.current()
    versions.keep("k", v0, "read at v0")
    assert versions.current() == v0 and versions.kept("k", v0) == (True, "read at v0")
    writer.execute("INSERT INTO t VALUES (1)")
    v1 = versions.current()
    assert v1 != v0 and versions.kept("k", v1) == (False, None)
    # What one thread kept, another finds while nothing is committed.
    versions.keep("k", v1, "read at v1")
    seen: list[Any] = []
    t = threading.Thread(target=lambda: seen.append(versions.kept("k", versions.current())))
    t.start()
    t.join()
    assert seen == [(True, "read at v1")]
    versions.close()
    writer.close()


def test_data_version_is_only_for_a_sqlite_file() -> None:
    assert DataVersion.for_engine(create_engine("postgresql://u@127.0.0.1/db")) is None
    assert DataVersion.for_engine(create_engine("sqlite://")) is None
    assert DataVersion.for_engine(create_engine("sqlite:///:memory:")) is None
    assert DataVersion.for_engine(create_engine("sqlite:///some/file.db")) is not None


def test_an_npy_header_numpys_parser_refuses_is_a_422_here_too(tmp_path: Path) -> None:
    with _app(tmp_path) as client:
        model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 3}).json()
        path = f"/v1/models/{model['id']}/predict"
        client.post(path, json={"x": [[1.0]]})  # built and cached: small bodies run here
        for descr in (b"<f1", b"|b2"):
            header = b"{'descr': '" + descr + b"', 'fortran_order': False, 'shape': (1, 1), }"
            header += b" " * (-(len(header) + 11) % 64) + b"\n"
            body = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(4)
            r = client.post(path, content=body, headers={"Content-Type": "application/x-npy"})
            assert r.status_code == 422, r.text


def test_a_state_the_loop_cannot_read_is_read_on_the_lane(tmp_path: Path) -> None:
    with _app(tmp_path / "app") as client:
        model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 3}).json()
        path = f"/v1/models/{model['id']}/predict"
        expected = client.post(path, json={"x": [[1.0]]}).content
        ctx = client.app.state.ctx  # type: ignore[attr-defined]
        # The event loop's reader on a file it cannot open; and a commit, so the state is read.
        ctx.data_version.reader = create_engine(f"sqlite:///{tmp_path}/missing/db.sqlite")
        assert client.post("/v1/models", json={"config": scenario.MODEL}).status_code == 201
        runs = _lane_runs(client)
        r = client.post(path, json={"x": [[1.0]]})
        assert r.status_code == 200 and r.content == expected and runs == [1]
