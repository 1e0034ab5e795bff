"""The database ends the worker's connection at the two commits a fit cannot lose: a
checkpoint's registration and the final commit. Each is retried in place: the job succeeds in
its first attempt, with exactly one row per epoch and the weights of an undisturbed run.

The two tests share one API and worker; each sets its fault up on their running database just
before its fit (a trigger holds for statements that start after it is made)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.harness import poll
from tests.faults.stack import Stack, fired, launch, terminate_once

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def running(
    pg_database: Callable[[], str], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, str]]:
    db = pg_database()
    with launch(db, redis_url, tmp_path_factory.mktemp("terminations")) as stack:
        yield stack, db


def worker_log_after(stack: Stack) -> Callable[[], str]:
    """What the worker logs from now on (not what it logged for an earlier test)."""
    path = stack.workers[0].log_path
    start = path.stat().st_size

    def logged() -> str:
        stack.workers[0].log.flush()
        with path.open("rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    return logged


def test_a_connection_ended_during_checkpoint_registration_is_retried(
    running: tuple[Stack, str],
) -> None:
    stack, db = running
    logged = worker_log_after(stack)
    terminate_once(db, name="ckpt", event="INSERT", table="checkpoints",
                   when="NEW.trigger = 'periodic'", nth=3)  # fmt: skip
    model_id, job_id = stack.fit(12)
    job = stack.wait(job_id)
    assert job["status"] == "succeeded" and job["attempt"] == 1, job
    assert fired(db, "ckpt") >= 3
    log = logged()
    assert "registering a checkpoint" in log and "trying again" in log
    stack.assert_same_as_a_straight_run(model_id, job)


def test_a_connection_ended_during_the_final_commit_is_retried(running: tuple[Stack, str]) -> None:
    stack, db = running
    logged = worker_log_after(stack)
    terminate_once(db, name="final", event="UPDATE", table="jobs",
                   when="OLD.status = 'running' AND NEW.status = 'succeeded'")  # fmt: skip
    model_id, job_id = stack.fit(12)
    job = stack.wait(job_id)
    assert job["status"] == "succeeded" and job["attempt"] == 1, job
    assert job["error"] is None
    poll(lambda: fired(db, "final") >= 1, "the fault")
    assert "committing job" in logged()
    stack.assert_same_as_a_straight_run(model_id, job)
