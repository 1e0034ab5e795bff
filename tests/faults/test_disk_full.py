"""A full disk under the artifact store, for real: DATA_DIR on a small tmpfs, filled while a
fit runs. The checkpoint write fails with ENOSPC and is retried in place; once space is freed
the fit goes on and succeeds in its first attempt, equal to an undisturbed run. A disk that
stays full ends the attempts, and the job fails as TransientError without a server path."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import poll
from tests.faults.stack import launch

pytestmark = pytest.mark.e2e


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs: mounting needs root (CAP_SYS_ADMIN), which this test's machines give."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Take every free byte of the disk."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_retried_in_place_and_the_fit_goes_on(
    pg_database: Callable[[], str], redis_url: str, tmp_path: Path, small_disk: Path
) -> None:
    db = pg_database()
    with launch(db, redis_url, tmp_path, data_dir=small_disk / "data") as stack:
        # Still running long after the fault comes (a few epochs in); run twice (the straight run).
        model_id, job_id = stack.fit(100)
        poll(lambda: stack.job(job_id)["epochs_done"] >= 5, "5 epochs")
        filler = _fill(small_disk)
        worker = stack.workers[0]
        poll(lambda: "checkpoint of job" in worker.output() and "OSError" in worker.output(),
             "a checkpoint write failing")  # fmt: skip
        filler.unlink()
        job = stack.wait(job_id)
        assert job["status"] == "succeeded" and job["attempt"] == 1, job
        stack.assert_same_as_a_straight_run(model_id, job)


def test_a_disk_that_stays_full_fails_the_job_after_its_attempts(
    pg_database: Callable[[], str], redis_url: str, tmp_path: Path, small_disk: Path
) -> None:
    db = pg_database()
    with launch(db, redis_url, tmp_path, data_dir=small_disk / "data",
                JOB_MAX_ATTEMPTS="2") as stack:  # fmt: skip
        _, job_id = stack.fit(300)
        poll(lambda: stack.job(job_id)["epochs_done"] >= 5, "5 epochs")
        _fill(small_disk)
        job = stack.wait(job_id)
        assert job["status"] == "failed" and job["attempt"] == 2, job
        assert job["error"]["type"] == "TransientError"
        assert "ENOSPC" in job["error"]["message"]
        assert str(small_disk) not in job["error"]["message"]
