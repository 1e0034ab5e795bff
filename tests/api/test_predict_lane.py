"""The predict lane (app.api.predict_lane): answers and errors as a thread of the pool gave
them, one state read per model for the requests waiting together, and what was committed
before a request arrived is what it sees."""

from __future__ import annotations

import asyncio
import io
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from app.api.predict_lane import PredictLane
from app.db.scope import Scope
from app.models.service import current_model, shared_state_reads
from tests.support import scenario


def _model(client: TestClient, seed: int = 3) -> str:
    r = client.post("/v1/models", json={"config": scenario.MODEL, "seed": seed})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@contextmanager
def _state_reads(client: TestClient) -> Iterator[list[str]]:
    engine = client.app.state.ctx.engine  # type: ignore[attr-defined]
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM models" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


def test_the_lane_answers_each_call_and_raises_its_errors() -> None:
    lane = PredictLane(threads=2)

    def fail() -> None:
        raise ValueError("bad input")

    async def main() -> list[int]:
        with pytest.raises(ValueError, match="bad input"):
            await lane.run(fail)
        return list(await asyncio.gather(*(lane.run(partial(pow, i, 2)) for i in range(200))))

    try:
        assert asyncio.run(main()) == [i * i for i in range(200)]
    finally:
        lane.close()


def test_a_call_whose_caller_has_gone_is_skipped() -> None:
    lane = PredictLane(threads=1)
    release, ran = threading.Event(), []

    async def main() -> None:
        blocker = asyncio.ensure_future(lane.run(release.wait))
        await asyncio.sleep(0.05)  # the lane's one thread now waits in `blocker`
        gone = asyncio.ensure_future(lane.run(lambda: ran.append("gone")))
        await asyncio.sleep(0)
        gone.cancel()
        release.set()
        assert await blocker is True
        assert await lane.run(lambda: 7) == 7

    try:
        asyncio.run(main())
    finally:
        lane.close()
    assert ran == []


def test_requests_waiting_together_share_one_state_read(client: TestClient) -> None:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    model_id = uuid.UUID(_model(client))
    lane = PredictLane(threads=1)
    release = threading.Event()

    def read() -> uuid.UUID:
        return current_model(ctx, scope=Scope.everything(), model_id=model_id).id

    async def main() -> list[uuid.UUID]:
        blocker = asyncio.ensure_future(lane.run(release.wait))
        await asyncio.sleep(0.05)
        waiting = [asyncio.ensure_future(lane.run(read)) for _ in range(6)]
        await asyncio.sleep(0)
        release.set()
        await blocker
        return list(await asyncio.gather(*waiting))

    read()  # the whole row is read once and kept: after it, a call reads only the state
    try:
        with _state_reads(client) as reads:
            assert asyncio.run(main()) == [model_id] * 6
        assert len(reads) == 1, reads
        # Outside a pass, each call reads.
        with _state_reads(client) as reads:
            read()
            read()
        assert len(reads) == 2
    finally:
        lane.close()


def test_shared_reads_end_with_their_pass(client: TestClient) -> None:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    model_id = uuid.UUID(_model(client))
    current_model(ctx, scope=Scope.everything(), model_id=model_id)  # the whole row, kept
    with _state_reads(client) as reads:
        for _ in range(2):
            with shared_state_reads():
                current_model(ctx, scope=Scope.everything(), model_id=model_id)
                current_model(ctx, scope=Scope.everything(), model_id=model_id)
    assert len(reads) == 2


def test_a_predict_sees_the_weights_set_before_it(client: TestClient) -> None:
    model_id = _model(client)
    path = f"/v1/models/{model_id}/predict"
    x = scenario.X[:4].tolist()
    before = np.array(client.post(path, json={"x": x}).json()["predictions"])
    weights = client.get(f"/v1/models/{model_id}/weights")
    assert weights.status_code == 200, weights.text
    with np.load(io.BytesIO(weights.content)) as z:
        changed = [(z[f"arr_{i}"] * 0.5).tolist() for i in range(len(z.files))]
    r = client.put(f"/v1/models/{model_id}/weights", json={"weights": changed})
    assert r.status_code == 200, r.text
    after = np.array(client.post(path, json={"x": x}).json()["predictions"])
    assert not np.array_equal(before, after)
