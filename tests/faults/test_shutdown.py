"""Clean shutdowns. A worker's warm shutdown (SIGTERM) stops its fit between batches and gives
the job back at once: another worker resumes it from its last checkpoint long before the lease
would have expired, and the job ends as an undisturbed run does. The API's SIGTERM ends its
event streams promptly with a `reconnect` event instead of waiting for them."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import poll, sse_events
from tests.faults.stack import launch

pytestmark = pytest.mark.e2e


def test_a_worker_told_to_stop_gives_its_job_back_at_once(
    pg_database: Callable[[], str], redis_url: str, tmp_path: Path
) -> None:
    db = pg_database()
    # A lease far longer than the test waits: only the give-back lets the job move on.
    with launch(db, redis_url, tmp_path, workers=2, JOB_LEASE_S="600") as stack:
        # Still running long after the fault comes (a few epochs in); run twice (the straight run).
        model_id, job_id = stack.fit(100)
        claimed = f"job {job_id}: attempt 1 claimed"
        first = poll(lambda: next((w for w in stack.workers if claimed in w.output()), None),
                     "a worker claiming the job")  # fmt: skip
        poll(lambda: stack.job(job_id)["epochs_done"] >= 3, "3 epochs")
        first.proc.send_signal(signal.SIGTERM)
        poll(lambda: not first.alive(), "the stopped worker exiting", timeout=60)
        poll(lambda: stack.job(job_id)["attempt"] == 2, "another worker taking the job",
             timeout=60)  # fmt: skip
        job = stack.wait(job_id)
        assert job["status"] == "succeeded" and job["attempt"] == 2, job
        assert "stopped for a shutdown" in first.output()
        stack.assert_same_as_a_straight_run(model_id, job)


def test_the_api_ends_its_event_streams_when_told_to_stop(
    pg_database: Callable[[], str], redis_url: str, tmp_path: Path
) -> None:
    db = pg_database()
    with launch(db, redis_url, tmp_path, EVENTS_MAX_S="300") as stack:
        _, job_id = stack.fit(5000)
        poll(lambda: stack.job(job_id)["epochs_done"] >= 1, "an epoch")
        streams: list[list[dict[str, Any]]] = [[], [], []]

        def listen(events: list[dict[str, Any]]) -> None:
            with httpx.Client(base_url=str(stack.client.base_url)) as client:
                for event in sse_events(client, f"/v1/jobs/{job_id}/events", timeout=300):
                    events.append(event)

        threads = [threading.Thread(target=listen, args=(events,), daemon=True)
                   for events in streams]  # fmt: skip
        for thread in threads:
            thread.start()
        poll(lambda: all(streams), "every stream's first event")  # all three are open
        stack.api.proc.send_signal(signal.SIGTERM)
        poll(lambda: not stack.api.alive(), "the API exiting", timeout=60)
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
        for events in streams:  # each ended with the event that tells its client to reconnect
            assert events[-1]["event"] == "reconnect", events[-3:]
            assert events[-1]["data"]["reason"] == "shutdown"
