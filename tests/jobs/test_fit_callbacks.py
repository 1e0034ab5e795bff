"""A job's ModelCheckpoint saves as checkpoint rows, the `best` selector, and per-batch progress
on the event stream, on the real Postgres with the in-process progress channel; and the Redis
progress channel of the distributed mode."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import numpy as np
import pytest

from app.core.errors import NotFound
from app.db.scope import SYSTEM
from app.db.session import unit_of_work
from app.jobs import events, service
from app.jobs import repository as repo
from app.jobs.runner import run_fit_job
from app.jobs.schemas import FitRequest
from app.models import checkpoints
from app.models import service as models
from app.models.schemas import ModelCreate
from app.runtime.progress import RedisBus
from tests.support import scenario
from tests.support.sse import parse_events


def _run(ctx: Any, callbacks: list[dict[str, Any]], **fit: Any) -> Any:
    model = models.create_model(ctx, scope=SYSTEM, body=ModelCreate(config=scenario.MODEL, seed=3))
    body = scenario.fit_body(callbacks=callbacks, **fit)
    job = service.submit_fit(ctx, scope=SYSTEM, model_id=model.id, body=FitRequest(**body))
    run_fit_job(ctx, job.id)
    done, rows = service.get_job(ctx, scope=SYSTEM, job_id=job.id)
    assert done.status == "succeeded", done.error_message
    return job.id, [r.logs for r in rows]


def _checkpoints(ctx: Any, job_id: uuid.UUID) -> list[Any]:
    rows = service.list_checkpoints(ctx, scope=SYSTEM, job_id=job_id)[1]
    return sorted(rows, key=lambda r: (r.epoch, -1 if r.batch is None else r.batch, r.created_at))


def _improving(values: list[float], better: Any) -> list[int]:
    """Epochs where the value strictly beats every earlier one, compared in float32."""
    out: list[int] = []
    best: float | None = None
    for i, v in enumerate(values):
        if best is None or better(np.float32(v), np.float32(best)):
            out.append(i)
            best = v
    return out


def test_model_checkpoint_saves_become_rows_and_best_picks_by_its_monitor(pg_ctx: Any) -> None:
    pg_ctx.settings.checkpoint_every_s = 1e9  # no periodic checkpoints: only the callback's
    mc = {
        "class_name": "ModelCheckpoint",
        "config": {"filepath": "best.keras", "monitor": "val_accuracy", "save_best_only": True},
    }
    job_id, logs = _run(pg_ctx, [mc], epochs=12)  # fmt: skip
    rows = _checkpoints(pg_ctx, job_id)
    saved = [r for r in rows if r.trigger == "model_checkpoint"]
    values = [row["val_accuracy"] for row in logs]
    assert [r.epoch for r in saved] == _improving(values, lambda a, b: a > b)
    assert [r.trigger for r in rows if r not in saved] == ["final"]
    assert all((r.monitor, r.mode, r.batch) == ("val_accuracy", "max", None) for r in rows)
    assert [r.logs for r in saved] == [logs[r.epoch] for r in saved]
    _, best = checkpoints.resolve(pg_ctx, scope=SYSTEM, job_id=job_id, selector="best")
    top = max(values)
    assert best.logs["val_accuracy"] == top and best.epoch == values.index(top)
    assert best.trigger == "model_checkpoint"  # the earliest of equal values: the saved one


def test_batch_saves_are_rows_but_never_resume_points(pg_ctx: Any) -> None:
    pg_ctx.settings.checkpoint_every_s = 1e9
    mc = {"class_name": "ModelCheckpoint", "config": {"save_freq": 3, "monitor": "loss"}}
    job_id, _ = _run(pg_ctx, [mc], epochs=3, batch_size=100)  # 5 batches an epoch
    rows = _checkpoints(pg_ctx, job_id)
    assert [(r.epoch, r.batch) for r in rows if r.trigger == "model_checkpoint"] == [
        (0, 2), (1, 0), (1, 3), (2, 1), (2, 4),
    ]  # fmt: skip
    assert all(set(r.logs) == {"loss", "accuracy"} for r in rows if r.batch is not None)
    (final,) = [r for r in rows if r.trigger == "final"]
    with unit_of_work(pg_ctx.sessions) as s:
        latest = repo.latest_checkpoint(s, job_id=job_id)
        assert latest is not None and latest.id == final.id and latest.batch is None
    _, best = checkpoints.resolve(pg_ctx, scope=SYSTEM, job_id=job_id, selector="best")
    assert best.logs["loss"] == min(r.logs["loss"] for r in rows)


def test_best_without_model_checkpoint_uses_val_loss_then_loss(pg_ctx: Any) -> None:
    job_id, logs = _run(pg_ctx, [], epochs=4)  # periodic checkpoints every epoch
    rows = _checkpoints(pg_ctx, job_id)
    assert {r.trigger for r in rows} == {"periodic", "final"} and rows[0].monitor is None
    _, best = checkpoints.resolve(pg_ctx, scope=SYSTEM, job_id=job_id, selector="best")
    assert best.logs["val_loss"] == min(row["val_loss"] for row in logs)
    job_id, logs = _run(pg_ctx, [], epochs=3, validation_data=None)
    _, best = checkpoints.resolve(pg_ctx, scope=SYSTEM, job_id=job_id, selector="best")
    assert best.logs["loss"] == min(row["loss"] for row in logs) and "val_loss" not in best.logs


def test_best_is_404_when_no_checkpoint_logged_the_monitor(pg_ctx: Any) -> None:
    mc = {"class_name": "ModelCheckpoint", "config": {}}  # monitors val_loss
    job_id, _ = _run(pg_ctx, [mc], epochs=2, validation_data=None)
    with pytest.raises(NotFound, match="val_loss"):
        checkpoints.resolve(pg_ctx, scope=SYSTEM, job_id=job_id, selector="best")


def test_terminate_on_nan_with_raise_error_fails_the_job(pg_ctx: Any) -> None:
    body = scenario.fit_body(epochs=3, callbacks=[
        {"class_name": "TerminateOnNaN", "config": {"raise_error": True}}])  # fmt: skip
    body["compile"] = {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 1e30}},
                       "loss": "mse"}  # fmt: skip
    linear = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 1]}},
        {"class_name": "Dense", "config": {"units": 1}}]}}  # fmt: skip
    model = models.create_model(pg_ctx, scope=SYSTEM, body=ModelCreate(config=linear, seed=3))
    job = service.submit_fit(pg_ctx, scope=SYSTEM, model_id=model.id, body=FitRequest(**body))
    run_fit_job(pg_ctx, job.id)
    failed, _ = service.get_job(pg_ctx, scope=SYSTEM, job_id=job.id)
    assert failed.status == "failed" and failed.error_type == "NonFiniteLoss"
    assert "TerminateOnNaN" in (failed.error_message or "")


def test_reduce_lr_on_plateau_logs_the_rate_in_the_epoch_rows(pg_ctx: Any) -> None:
    cb = {"class_name": "ReduceLROnPlateau", "config": {"patience": 0, "min_delta": 10.0}}
    _, logs = _run(pg_ctx, [cb], epochs=3)
    # Logged before the reduction; the first epoch always improves on "no best yet".
    assert [row["learning_rate"] for row in logs] == pytest.approx([0.1, 0.1, 0.01], rel=1e-6)


def test_progress_events_arrive_on_the_stream(pg_ctx: Any) -> None:
    pg_ctx.settings.events_progress_s = 0.0  # every batch
    model = models.create_model(
        pg_ctx, scope=SYSTEM, body=ModelCreate(config=scenario.MODEL, seed=3)
    )
    body = scenario.fit_body(epochs=3, callbacks=[], batch_size=100)
    job = service.submit_fit(pg_ctx, scope=SYSTEM, model_id=model.id, body=FitRequest(**body))

    async def collect() -> list[str]:
        chunks: list[str] = []
        runner: threading.Thread | None = None
        async for chunk in events.stream(pg_ctx, scope=SYSTEM, job_id=job.id, after=-1):
            chunks.append(chunk)
            if runner is None:  # subscribed: start training
                runner = threading.Thread(target=run_fit_job, args=(pg_ctx, job.id))
                runner.start()
        assert runner is not None
        runner.join(timeout=30)
        return chunks

    got = parse_events(asyncio.run(asyncio.wait_for(collect(), 60)))
    assert got[-1][0] == "status" and got[-1][1]["status"] == "succeeded"
    progress = [data for kind, data in got if kind == "progress"]
    assert progress, got
    assert all(set(p) == {"epoch", "batch", "steps", "epochs", "attempt", "logs"} for p in progress)
    assert all(p["steps"] == 5 and p["epochs"] == 3 and 0 <= p["batch"] < 5 for p in progress)
    assert set(progress[0]["logs"]) == {"loss", "accuracy"}
    sent = -1
    for kind, data in got:  # progress only for epochs whose row was not sent yet
        if kind == "epoch":
            sent = data["epoch"]
        elif kind == "progress":
            assert data["epoch"] > sent
    assert [d["epoch"] for k, d in got if k == "epoch"] == [0, 1, 2]


def test_the_redis_channel_carries_progress(redis_url: str) -> None:
    bus = RedisBus(redis_url)
    job_id = uuid.uuid4()

    async def roundtrip() -> list[Any]:
        async with bus.subscribe(job_id) as sub:
            await asyncio.to_thread(bus.publish, job_id, {"epoch": 0, "batch": 1})
            first = await sub.get(5.0)
            return [first, await sub.get(0.05)]

    try:
        assert asyncio.run(roundtrip()) == [{"epoch": 0, "batch": 1}, None]
    finally:
        bus.close()
