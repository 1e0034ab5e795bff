"""The database ends the worker's connection at the two commits a fit cannot lose: a
checkpoint's registration and the final commit. Each is retried in place: the job succeeds in
its first attempt, with exactly one row per epoch and the weights of an undisturbed run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.harness import poll
from tests.faults.stack import fired, launch, terminate_once

pytestmark = pytest.mark.e2e


def test_a_connection_ended_during_checkpoint_registration_is_retried(
    pg_database: Callable[[], str], redis_url: str, tmp_path: Path
) -> None:
    db = pg_database()
    terminate_once(db, name="ckpt", event="INSERT", table="checkpoints",
                   when="NEW.trigger = 'periodic'", nth=3)  # fmt: skip
    with launch(db, redis_url, tmp_path) as stack:
        model_id, job_id = stack.fit(12)
        job = stack.wait(job_id)
        assert job["status"] == "succeeded" and job["attempt"] == 1, job
        assert fired(db, "ckpt") >= 3
        log = stack.workers[0].output()
        assert "registering a checkpoint" in log and "trying again" in log
        stack.assert_same_as_a_straight_run(model_id, job)


def test_a_connection_ended_during_the_final_commit_is_retried(
    pg_database: Callable[[], str], redis_url: str, tmp_path: Path
) -> None:
    db = pg_database()
    terminate_once(db, name="final", event="UPDATE", table="jobs",
                   when="OLD.status = 'running' AND NEW.status = 'succeeded'")  # fmt: skip
    with launch(db, redis_url, tmp_path) as stack:
        model_id, job_id = stack.fit(12)
        job = stack.wait(job_id)
        assert job["status"] == "succeeded" and job["attempt"] == 1, job
        assert job["error"] is None
        poll(lambda: fired(db, "final") >= 1, "the fault")
        assert "committing job" in stack.workers[0].output()
        stack.assert_same_as_a_straight_run(model_id, job)
