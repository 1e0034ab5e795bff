"""Epoch rows are committed at most every EPOCH_COMMIT_S, the epochs that end meanwhile
together, on the real Postgres; the end of the fit commits at once, and each row keeps the time
its epoch ended."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event

from app.db.scope import SYSTEM
from app.jobs import service
from app.jobs.runner import run_fit_job
from app.jobs.schemas import FitRequest
from app.models import service as models
from app.models.schemas import ModelCreate
from tests.support import scenario


def _fit(ctx: Any, epochs: int) -> tuple[Any, list[Any], int]:
    """Runs a fit; returns its job, its epoch rows and the commits of its epoch writer."""
    commits = 0

    def count(conn: Any) -> None:
        nonlocal commits
        if threading.current_thread().name.startswith("epoch-writer-"):
            commits += 1

    event.listen(ctx.engine, "commit", count)
    try:
        model = models.create_model(ctx, scope=SYSTEM, body=ModelCreate(config=scenario.MODEL))
        body = FitRequest(**scenario.fit_body(epochs=epochs, callbacks=[], seed=0))
        job = service.submit_fit(ctx, scope=SYSTEM, model_id=model.id, body=body)
        run_fit_job(ctx, job.id)
    finally:
        event.remove(ctx.engine, "commit", count)
    done, rows = service.get_job(ctx, scope=SYSTEM, job_id=job.id)
    return done, list(rows), commits


def test_epochs_between_commits_share_one_and_the_end_commits_at_once(pg_ctx: Any) -> None:
    # One commit for the first epoch; the rest wait out the interval, which the end of the fit
    # cuts short (else the job would take an hour).
    pg_ctx.settings.epoch_commit_s = 3600.0
    pg_ctx.settings.checkpoint_every_s = 1e9  # no periodic checkpoint, which would commit too
    job, rows, commits = _fit(pg_ctx, epochs=20)
    assert job.status == "succeeded", job.error_message
    assert [r.epoch for r in rows] == list(range(20))
    assert job.epochs_done == 20
    assert 1 <= commits <= 2
    # created_at is when each epoch ended, not when its commit ran.
    ended = [r.created_at for r in rows]
    assert ended == sorted(ended) and len(set(ended)) == 20
    assert job.started_at <= ended[0] and ended[-1] <= job.finished_at


def test_a_zero_interval_commits_each_epoch_as_it_ends(pg_ctx: Any) -> None:
    pg_ctx.settings.epoch_commit_s = 0.0
    pg_ctx.settings.checkpoint_every_s = 1e9
    job, rows, commits = _fit(pg_ctx, epochs=5)
    assert job.status == "succeeded", job.error_message
    assert [r.epoch for r in rows] == list(range(5))
    assert 1 <= commits <= 5
