"""The runner on the real Postgres, in-process: success, duplicates, a stolen lease, failures."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import update

from app.db.models import JobRow
from app.db.scope import SYSTEM
from app.db.session import unit_of_work
from app.engine.training import checkpoint
from app.jobs import repository as repo
from app.jobs import service
from app.jobs.runner import run_fit_job
from app.jobs.schemas import FitRequest
from app.models import repository as models_repo
from app.models import service as models
from app.models.schemas import ModelCreate
from tests.e2e.harness import poll
from tests.support import scenario


def _submit(ctx: Any, **fit: Any) -> tuple[Any, Any]:
    model = models.create_model(ctx, scope=SYSTEM, body=ModelCreate(config=scenario.MODEL, seed=3))
    job = service.submit_fit(
        ctx, scope=SYSTEM, model_id=model.id, body=FitRequest(**scenario.fit_body(**fit))
    )
    return model, job


def test_a_fit_job_commits_rows_checkpoint_and_weights(pg_ctx: Any) -> None:
    model, job = _submit(pg_ctx, epochs=4, callbacks=[])
    run_fit_job(pg_ctx, job.id)
    done, rows = service.get_job(pg_ctx, scope=SYSTEM, job_id=job.id)
    assert done.status == "succeeded", done.error_message
    assert done.attempt == 1 and done.epochs_done == 4
    assert [r.epoch for r in rows] == [0, 1, 2, 3]
    with unit_of_work(pg_ctx.sessions) as s:
        ckpt = repo.latest_checkpoint(s, job_id=job.id)
        stored = models_repo.get_model(s, model_id=model.id, scope=SYSTEM)
    assert ckpt is not None and stored is not None
    assert stored.weights_checkpoint_id == ckpt.id and stored.weights_key == ckpt.key
    tensors, meta = checkpoint.from_bytes(pg_ctx.store.read(ckpt.key))
    assert meta["epoch"] == 3 and meta["logs"] == rows[-1].logs
    assert meta["model_config"] == scenario.MODEL and meta["compile_config"]["loss"]
    assert {"model/dense/kernel", "rng/generator"} <= set(tensors)
    assert any(k.startswith("optimizer/") for k in tensors)


def test_a_duplicate_delivery_changes_nothing(pg_ctx: Any) -> None:
    _, job = _submit(pg_ctx, epochs=2, callbacks=[])
    run_fit_job(pg_ctx, job.id)
    first, _ = service.get_job(pg_ctx, scope=SYSTEM, job_id=job.id)
    run_fit_job(pg_ctx, job.id)
    again, _ = service.get_job(pg_ctx, scope=SYSTEM, job_id=job.id)
    assert (again.status, again.attempt, again.finished_at) == (
        first.status, first.attempt, first.finished_at,
    )  # fmt: skip


def test_an_attempt_that_lost_its_lease_stops_and_writes_nothing_more(pg_ctx: Any) -> None:
    _, job = _submit(pg_ctx, epochs=10_000, callbacks=[], batch_size=1)
    runner = threading.Thread(target=run_fit_job, args=(pg_ctx, job.id))
    runner.start()
    poll(
        lambda: service.get_job(pg_ctx, scope=SYSTEM, job_id=job.id)[0].epochs_done >= 3, "3 epochs"
    )
    with unit_of_work(pg_ctx.sessions) as s:  # another worker took the job over
        s.execute(update(JobRow).where(JobRow.id == job.id).values(attempt=JobRow.attempt + 1))
    runner.join(timeout=30)
    assert not runner.is_alive()
    stolen, rows = service.get_job(pg_ctx, scope=SYSTEM, job_id=job.id)
    assert stolen.status == "running" and stolen.attempt == 2  # left to its new owner
    time.sleep(0.3)
    assert len(service.get_job(pg_ctx, scope=SYSTEM, job_id=job.id)[1]) == len(rows)


def test_cancel_stops_a_running_fit_between_batches(pg_ctx: Any) -> None:
    model, job = _submit(pg_ctx, epochs=10_000, callbacks=[], batch_size=1)
    runner = threading.Thread(target=run_fit_job, args=(pg_ctx, job.id))
    runner.start()
    poll(
        lambda: service.get_job(pg_ctx, scope=SYSTEM, job_id=job.id)[0].epochs_done >= 2, "2 epochs"
    )
    service.cancel_job(pg_ctx, scope=SYSTEM, job_id=job.id)
    runner.join(timeout=30)
    done, rows = service.get_job(pg_ctx, scope=SYSTEM, job_id=job.id)
    assert done.status == "cancelled" and done.finished_at is not None
    assert [r.epoch for r in rows] == list(range(done.epochs_done))
    assert models.get_model(pg_ctx, scope=SYSTEM, model_id=model.id).weights_key is None


def test_a_missing_inputs_file_fails_the_job_without_naming_a_server_path(pg_ctx: Any) -> None:
    _, job = _submit(pg_ctx, epochs=2, callbacks=[])
    pg_ctx.store.delete_prefix(job.data_key)
    run_fit_job(pg_ctx, job.id)
    failed, _ = service.get_job(pg_ctx, scope=SYSTEM, job_id=job.id)
    assert failed.status == "failed" and failed.error_type == "ArtifactMissing"
    assert "ARTIFACT_DIR" in (failed.error_message or "")
    assert str(pg_ctx.store.root) not in (failed.error_message or "")


def test_a_diverged_fit_finishes_with_null_losses(pg_ctx: Any) -> None:
    body = scenario.fit_body(epochs=3, callbacks=[])
    body["compile"] = {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 1e30}},
                       "loss": "mse", "metrics": ["mae"]}  # fmt: skip
    linear = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 1]}},
        {"class_name": "Dense", "config": {"units": 1}}]}}  # fmt: skip
    model = models.create_model(pg_ctx, scope=SYSTEM, body=ModelCreate(config=linear, seed=3))
    job = service.submit_fit(pg_ctx, scope=SYSTEM, model_id=model.id, body=FitRequest(**body))
    run_fit_job(pg_ctx, job.id)
    done, rows = service.get_job(pg_ctx, scope=SYSTEM, job_id=job.id)
    assert done.status == "succeeded", done.error_message
    assert len(rows) == 3 and rows[-1].logs["loss"] is None  # Keras logs nan; JSON has null


def test_a_stopping_process_leaves_the_job_to_be_resumed(pg_ctx: Any) -> None:
    _, job = _submit(pg_ctx, epochs=10_000, callbacks=[], batch_size=1)
    runner = threading.Thread(target=run_fit_job, args=(pg_ctx, job.id))
    runner.start()
    poll(
        lambda: service.get_job(pg_ctx, scope=SYSTEM, job_id=job.id)[0].epochs_done >= 2, "2 epochs"
    )
    pg_ctx.stopping.set()
    runner.join(timeout=30)
    assert not runner.is_alive()
    left, _ = service.get_job(pg_ctx, scope=SYSTEM, job_id=job.id)
    assert left.status == "running" and left.finished_at is None  # the reaper will resume it
