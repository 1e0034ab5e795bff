"""The streams of one job share their database polls: a poll that another stream with the same
cursor made lately (or is making) answers them all, and many concurrent streams still each get
every epoch and the final status."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

from sqlalchemy import event

from app.db.models import JobStatus
from app.db.scope import SYSTEM
from app.db.session import unit_of_work
from app.jobs import events
from app.jobs import repository as repo
from tests.jobs.test_stream_rewrites import _claim, _job, _write
from tests.support.sse import parse_events


def _snapshot(epochs: int) -> events._Snapshot:
    return events._Snapshot(JobStatus.running, {"epochs_done": epochs}, [])


def test_a_poll_in_progress_answers_the_streams_that_ask_meanwhile() -> None:
    shared = events._SharedReads()
    reading, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow_read() -> events._Snapshot:
        calls.append("first")
        reading.set()
        release.wait(10)
        return _snapshot(1)

    got: list[events._Snapshot | None] = []
    first = threading.Thread(target=lambda: got.append(shared.get(("k",), 60, slow_read)))
    first.start()
    reading.wait(10)
    second = threading.Thread(
        target=lambda: got.append(shared.get(("k",), 60, lambda: calls.append("second"))),  # type: ignore[func-returns-value]
    )
    second.start()
    release.set()
    first.join(10)
    second.join(10)
    assert calls == ["first"]
    assert len(got) == 2 and got[0] is got[1]
    # Within the time to live the same snapshot answers; another cursor reads on its own.
    assert shared.get(("k",), 60, lambda: _snapshot(2)) is got[0]
    assert shared.get(("other",), 60, lambda: _snapshot(3)).summary == {"epochs_done": 3}  # type: ignore[union-attr]


def test_an_expired_or_failed_poll_is_read_again() -> None:
    shared = events._SharedReads()
    assert shared.get(("k",), 0, lambda: _snapshot(1)).summary == {"epochs_done": 1}  # type: ignore[union-attr]
    assert shared.get(("k",), 0, lambda: _snapshot(2)).summary == {"epochs_done": 2}  # type: ignore[union-attr]

    def broken() -> events._Snapshot:
        raise ConnectionError("database went away")

    try:
        shared.get(("j",), 60, broken)
    except ConnectionError:
        pass
    else:
        raise AssertionError("the read's error must reach its caller")
    # The failed read is not kept: the next poll reads.
    assert shared.get(("j",), 60, lambda: _snapshot(4)).summary == {"epochs_done": 4}  # type: ignore[union-attr]


def test_many_streams_of_one_job_each_get_every_epoch(pg_ctx: Any) -> None:
    job_id = _job(pg_ctx)
    attempt = _claim(pg_ctx, job_id)
    polls: list[str] = []

    def count(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM epoch_logs" in statement:
            polls.append(statement)

    event.listen(pg_ctx.engine, "before_cursor_execute", count)

    async def listen() -> list[tuple[str, dict[str, Any]]]:
        chunks = [c async for c in events.stream(pg_ctx, scope=SYSTEM, job_id=job_id, after=-1)]
        return parse_events(chunks)

    async def run(streams: int) -> list[list[tuple[str, dict[str, Any]]]]:
        tasks = [asyncio.create_task(listen()) for _ in range(streams)]
        for epochs in (range(0, 2), range(2, 4), range(4, 6)):
            await asyncio.sleep(pg_ctx.settings.events_poll_s)
            await asyncio.to_thread(_write, pg_ctx, job_id, attempt, epochs, epochs.start == 0)
        with unit_of_work(pg_ctx.sessions) as s:
            repo.finish_job(s, job_id=job_id, attempt=attempt, status=JobStatus.succeeded)
        return list(await asyncio.gather(*tasks))

    try:
        results = asyncio.run(asyncio.wait_for(run(30), 60))
    finally:
        event.remove(pg_ctx.engine, "before_cursor_execute", count)
    for got in results:
        assert [d["epoch"] for k, d in got if k == "epoch"] == list(range(6))
        assert got[-1] == ("status", {"status": "succeeded", "epochs_done": 6, "error": None})
    assert polls  # the streams did read the rows from the database


def test_the_streams_of_a_job_share_one_redis_subscription(redis_url: str) -> None:
    from app.runtime.progress import RedisBus

    bus = RedisBus(redis_url)
    job_id, other = uuid.uuid4(), uuid.uuid4()

    async def fan_out() -> list[Any]:
        async with bus.subscribe(job_id) as a, bus.subscribe(job_id) as b:
            async with bus.subscribe(other) as c:
                assert len(bus._feeds) == 2  # one subscription a job, not one a stream
                await asyncio.to_thread(bus.publish, job_id, {"epoch": 0, "batch": 1})
                got = [await a.get(5.0), await b.get(5.0), await c.get(0.05)]
            assert len(bus._feeds) == 1
        assert not bus._feeds  # the last stream of a job ends its subscription
        # A later stream subscribes afresh and gets what is published after it joined.
        async with bus.subscribe(job_id) as d:
            await asyncio.to_thread(bus.publish, job_id, {"epoch": 1, "batch": 0})
            got.append(await d.get(5.0))
        return got

    try:
        assert asyncio.run(asyncio.wait_for(fan_out(), 30)) == [
            {"epoch": 0, "batch": 1}, {"epoch": 0, "batch": 1}, None, {"epoch": 1, "batch": 0}
        ]  # fmt: skip
    finally:
        bus.close()
