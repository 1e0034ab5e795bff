"""No worker alive: the job's worker is killed and no other exists. The reaper sends the job one
message (never a second while it is pending, so the queue cannot flood) and, when nobody takes
it within JOB_ORPHANED_AFTER_S, the job ends failed with WorkerLost."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.e2e.harness import poll
from tests.faults.stack import launch

pytestmark = pytest.mark.e2e


def test_a_job_nobody_takes_fails_as_worker_lost_and_the_queue_stays_short(
    pg_database: Callable[[], str], redis_url: str, tmp_path: Path
) -> None:
    db = pg_database()
    with launch(db, redis_url, tmp_path, JOB_LEASE_S="1", JOB_ORPHANED_AFTER_S="4") as stack:
        _, job_id = stack.fit(300)
        poll(lambda: stack.job(job_id)["epochs_done"] >= 3, "3 epochs")
        worker = stack.workers[0]
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait()
        queue = redis.Redis.from_url(redis_url)
        depths: list[int] = []

        def ended() -> dict[str, object] | None:
            depths.append(int(queue.llen(stack.env["CELERY_QUEUE"])))
            job = stack.job(job_id)
            return job if job["status"] != "running" else None

        job = poll(ended, "the job ending", timeout=60, every=0.2)
        assert job["status"] == "failed", job
        assert job["error"]["type"] == "WorkerLost"
        assert "no worker took the job" in job["error"]["message"]
        assert max(depths) == 1  # one message, sent once, never consumed
        assert stack.api.output().count(f"re-dispatching job {job_id}") == 1
