"""The predict lane (app.api.predict_lane): answers and errors as a thread of the pool gave
them, one state read per model for the requests waiting together, and what was committed
before a request arrived is what it sees."""

from __future__ import annotations

import asyncio
import io
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.api.predict_lane import Mergeable, PredictLane
from app.core.errors import Unavailable
from app.db.scope import Scope
from app.jobs import inference_jobs
from app.models.service import current_model, shared_state_reads
from tests.api.conftest import serve
from tests.support import scenario
from tests.support.statements import selects


def _model(client: TestClient, seed: int = 3) -> str:
    r = client.post("/v1/models", json={"config": scenario.MODEL, "seed": seed})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _state_reads(client: TestClient) -> Any:
    return selects(client.app.state.ctx.engine, "FROM models")  # type: ignore[attr-defined]


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
    ctx.data_version = None  # each call reads the state, as on PostgreSQL
    model_id = uuid.UUID(_model(client))
    lane = PredictLane(threads=1)
    release = threading.Event()

    def read() -> uuid.UUID:
        return current_model(ctx, scope=Scope.everything(), model_id=model_id).id

    async def main() -> list[uuid.UUID]:
        blocker = asyncio.ensure_future(lane.run(release.wait))
        await asyncio.sleep(0.05)
        waiting = [asyncio.ensure_future(lane.run(read, group=model_id)) for _ in range(6)]
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
    ctx.data_version = None  # each call reads the state, as on PostgreSQL
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


def _fake_merge(key: str, x: list[list[float]], calls: list[int], give: bool = True) -> Mergeable:
    def run(rows: Any) -> dict[str, np.ndarray] | None:
        calls.append(len(rows))
        if not give:
            return None
        return {"out": np.asarray(rows, np.float32) * 2}

    return Mergeable(key, x, run, lambda outputs: outputs["out"].tolist())


def test_micro_batching_merges_requests_of_one_key_and_answers_each_its_rows() -> None:
    lane = PredictLane(threads=1, batch_wait_s=0.05)
    calls: list[int] = []

    async def main() -> list[Any]:
        jobs = [lane.run(partial(str, i), _fake_merge("a", [[float(i)], [float(i)]], calls))
                for i in range(5)]  # fmt: skip
        jobs.append(lane.run(partial(str, "b"), _fake_merge("b", [[9.0]], calls)))
        return list(await asyncio.gather(*jobs))

    try:
        answers = asyncio.run(main())
    finally:
        lane.close()
    assert answers[:5] == [[[2.0 * i], [2.0 * i]] for i in range(5)]
    assert answers[5] == "b"  # alone in its key: run as itself
    assert calls == [10]  # the five of key "a" in one run over their ten rows


def test_merged_requests_that_may_not_run_together_run_alone() -> None:
    lane = PredictLane(threads=1, batch_wait_s=0.05)
    calls: list[int] = []

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(
            lane.run(partial(str, i), _fake_merge("a", [[1.0]], calls, give=False))
            for i in range(3))))  # fmt: skip

    try:
        assert asyncio.run(main()) == ["0", "1", "2"]
    finally:
        lane.close()
    assert calls == [3]


def test_micro_batching_off_runs_each_alone() -> None:
    lane = PredictLane(threads=1)  # PREDICT_BATCH_WAIT_S 0, the default
    calls: list[int] = []

    async def main() -> list[Any]:
        return list(
            await asyncio.gather(
                *(lane.run(partial(str, i), _fake_merge("a", [[1.0]], calls)) for i in range(3))
            )
        )

    try:
        assert asyncio.run(main()) == ["0", "1", "2"]
    finally:
        lane.close()
    assert calls == []


MLP = {"class_name": "Sequential", "config": {"name": "mlp", "layers": [
    {"class_name": "InputLayer", "config": {"batch_shape": [None, 64]}},
    {"class_name": "Dense", "config": {"units": 32, "activation": "relu"}},
    {"class_name": "Dense", "config": {"units": 10, "activation": "softmax"}}]}}  # fmt: skip


def _reorder_bound(x: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray) -> float:
    """How far a row of Dense-ReLU-Dense-softmax can move when its matrix products sum in
    another order (a merged batch): gamma_K = K eps / (1 - K eps) times the sum of the
    magnitudes for each product, carried through ReLU (1-Lipschitz) and the second product,
    and softmax, whose outputs move at most twice its largest input's move."""
    eps = float(np.finfo(np.float32).eps)

    def gamma(k: int) -> float:
        return (k + 1) * eps / (1 - (k + 1) * eps)

    x64, w1a, w2a = np.abs(x.astype(np.float64)), np.abs(w1), np.abs(w2)
    d1 = gamma(w1.shape[0]) * (x64 @ w1a + np.abs(b1))
    h = np.maximum(x.astype(np.float64) @ w1 + b1, 0)
    d2 = d1 @ w2a + gamma(w2.shape[0]) * (np.abs(h) @ w2a)
    return float(2 * d2.max())


def test_micro_batched_predicts_answer_their_own_rows(tmp_path: Path) -> None:
    # Nothing runs on the event loop: every predict goes to the lane.
    with serve(tmp_path, None, predict_batch_wait_s=0.05, predict_threads=1,
               predict_inline_max_cost=0) as client:  # fmt: skip
        r = client.post("/v1/models", json={"config": MLP, "seed": 1})
        model_id = r.json()["id"]
        with np.load(io.BytesIO(client.get(f"/v1/models/{model_id}/weights").content)) as z:
            w1, b1, w2 = (z[f"arr_{i}"].astype(np.float64) for i in range(3))
        rows = np.random.default_rng(0).random((8, 64), dtype=np.float32)
        path = f"/v1/models/{model_id}/predict"
        lone = [client.post(path, json={"x": [r.tolist()]}).json()["predictions"][0]
                for r in rows]  # fmt: skip
        merged_rows: list[int] = []
        predict_now = inference_jobs.predict_now

        def spy(*args: Any, **kwargs: Any) -> Any:
            merged_rows.append(len(kwargs["body"].x))
            return predict_now(*args, **kwargs)

        inference_jobs.predict_now = spy  # type: ignore[assignment]
        try:
            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(
                    lambda r: client.post(path, json={"x": [r.tolist()]}), rows))  # fmt: skip
        finally:
            inference_jobs.predict_now = predict_now  # type: ignore[assignment]
    assert merged_rows and max(merged_rows) > 1, merged_rows
    for row, answer, alone in zip(rows, answers, lone, strict=True):
        assert answer.status_code == 200, answer.text
        got = np.asarray(answer.json()["predictions"][0], np.float64)
        bound = _reorder_bound(row[None, :], w1, b1, w2)
        np.testing.assert_allclose(got, alone, rtol=0, atol=bound)


def test_a_long_predict_holds_up_only_its_own_models_requests() -> None:
    lane = PredictLane(threads=2)
    first, second, slow_done = threading.Event(), threading.Event(), threading.Event()

    async def main() -> None:
        # Both threads busy; then a slow predict of model a and one of model b wait together.
        busy = [asyncio.ensure_future(lane.run(e.wait, group=g))
                for e, g in ((first, "x"), (second, "y"))]  # fmt: skip
        await asyncio.sleep(0.05)
        slow = asyncio.ensure_future(lane.run(partial(slow_done.wait, 10), group="a"))
        other = asyncio.ensure_future(lane.run(partial(str, "b"), group="b"))
        await asyncio.sleep(0.05)
        first.set()  # a thread frees: its pass is model a's alone
        await asyncio.sleep(0.05)
        second.set()  # the other frees and answers model b while a's still runs
        assert await asyncio.wait_for(other, 5) == "b"
        assert not slow.done()
        slow_done.set()
        assert await slow is True
        await asyncio.gather(*busy)

    try:
        asyncio.run(main())
    finally:
        slow_done.set()
        lane.close()


class _Stop(BaseException):
    pass


def test_a_failing_pass_fails_its_requests_not_the_thread() -> None:
    lane = PredictLane(threads=1, batch_wait_s=0.02)

    def run(rows: Any) -> dict[str, np.ndarray] | None:
        raise _Stop("the merged predict broke")

    async def main() -> None:
        merge = Mergeable("k", [[1.0]], run, lambda outputs: outputs)
        got = await asyncio.gather(*(lane.run(partial(str, i), merge) for i in range(2)),
                                   return_exceptions=True)  # fmt: skip
        assert all(isinstance(g, _Stop) for g in got), got
        with pytest.raises(RuntimeError, match="StopIteration"):
            await lane.run(partial(next, iter(())))
        assert await lane.run(partial(str, "still here")) == "still here"

    try:
        asyncio.run(main())
    finally:
        lane.close()


def test_a_closed_lane_answers_503() -> None:
    lane = PredictLane(threads=1)
    lane.close()

    async def main() -> None:
        with pytest.raises(Unavailable):
            await lane.run(partial(str, 1))

    asyncio.run(main())
