"""The job state machine on the real Postgres: atomic claims, leases, fencing, upserts, reaping."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from app.db.base import utcnow
from app.db.models import DEFAULT_PROJECT_ID, CheckpointRow, JobRow, JobStatus, ModelRow
from app.db.scope import SYSTEM
from app.db.session import unit_of_work
from app.jobs import repository as repo
from app.models import repository as models_repo


def _job(ctx: Any, **fields: Any) -> uuid.UUID:
    with unit_of_work(ctx.sessions) as s:
        model = models_repo.add_model(
            s, row=ModelRow(name="m", config={}, seed=1, summary={}, project_id=DEFAULT_PROJECT_ID)
        )
        attempts = fields.pop("max_attempts", 3)
        row = JobRow(
            model_id=model.id,
            project_id=DEFAULT_PROJECT_ID,
            request={},
            data_key="k",
            epochs=5,
            max_attempts=attempts,
            **fields,
        )
        job = repo.add_job(s, row=row)
        return job.id


def _claim(ctx: Any, job_id: uuid.UUID, owner: str = "w", lease_s: float = 30) -> int | None:
    with unit_of_work(ctx.sessions) as s:
        return repo.claim_job(s, job_id=job_id, owner=owner, lease_s=lease_s)


def _get(ctx: Any, job_id: uuid.UUID) -> JobRow:
    with unit_of_work(ctx.sessions) as s:
        job = repo.get_job(s, job_id=job_id, scope=SYSTEM)
        assert job is not None
        return job


def _expire(ctx: Any, job_id: uuid.UUID) -> None:
    with unit_of_work(ctx.sessions) as s:
        s.execute(update(JobRow).where(JobRow.id == job_id)
                  .values(lease_expires_at=utcnow() - timedelta(seconds=1)))  # fmt: skip


def test_only_one_of_many_concurrent_claims_wins(pg_ctx: Any) -> None:
    job_id = _job(pg_ctx)
    results: list[int | None] = []
    barrier = threading.Barrier(8)

    def claim(i: int) -> None:
        barrier.wait()
        results.append(_claim(pg_ctx, job_id, owner=f"w{i}"))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=lambda r: r or 0) == [None] * 7 + [1]
    job = _get(pg_ctx, job_id)
    assert job.status == JobStatus.running and job.attempt == 1 and job.started_at is not None


def test_an_expired_lease_can_be_reclaimed_and_fences_the_old_attempt(pg_ctx: Any) -> None:
    job_id = _job(pg_ctx)
    assert _claim(pg_ctx, job_id) == 1
    assert _claim(pg_ctx, job_id) is None  # lease still valid
    _expire(pg_ctx, job_id)
    assert _claim(pg_ctx, job_id, owner="second") == 2
    with unit_of_work(pg_ctx.sessions) as s:
        # The first attempt is stale: none of its writes take effect.
        assert repo.record_epoch(s, job_id=job_id, attempt=1, epoch=0, logs={"loss": 1.0}) is False
        assert repo.renew_lease(s, job_id=job_id, attempt=1, lease_s=30) is None
        assert repo.finish_job(s, job_id=job_id, attempt=1, status=JobStatus.succeeded) is False
        stale = CheckpointRow(job_id=job_id, epoch=0, attempt=1, key="x", size_bytes=1, logs={})
        assert repo.add_checkpoint(s, row=stale) is False
    with unit_of_work(pg_ctx.sessions) as s:
        assert repo.record_epoch(s, job_id=job_id, attempt=2, epoch=0, logs={"loss": 2.0})
        assert repo.renew_lease(s, job_id=job_id, attempt=2, lease_s=30) is False
    with unit_of_work(pg_ctx.sessions) as s:
        rows = repo.epoch_logs(s, job_id=job_id)
        assert [(r.epoch, r.logs, r.attempt) for r in rows] == [(0, {"loss": 2.0}, 2)]


def test_epoch_rows_are_upserts_and_a_redo_drops_later_epochs(pg_ctx: Any) -> None:
    job_id = _job(pg_ctx)
    _claim(pg_ctx, job_id)
    for epoch in range(4):
        with unit_of_work(pg_ctx.sessions) as s:
            repo.record_epoch(s, job_id=job_id, attempt=1, epoch=epoch, logs={"loss": float(epoch)})
    _expire(pg_ctx, job_id)
    assert _claim(pg_ctx, job_id) == 2
    with unit_of_work(pg_ctx.sessions) as s:  # resumed from a checkpoint at epoch 1
        repo.record_epoch(
            s, job_id=job_id, attempt=2, epoch=2, logs={"loss": 20.0}, first_of_attempt=True
        )
    with unit_of_work(pg_ctx.sessions) as s:
        rows = repo.epoch_logs(s, job_id=job_id)
        assert [(r.epoch, r.attempt) for r in rows] == [(0, 1), (1, 1), (2, 2)]
    assert _get(pg_ctx, job_id).epochs_done == 3


def test_attempts_are_bounded(pg_ctx: Any) -> None:
    job_id = _job(pg_ctx, max_attempts=2)
    assert _claim(pg_ctx, job_id) == 1
    _expire(pg_ctx, job_id)
    assert _claim(pg_ctx, job_id) == 2
    _expire(pg_ctx, job_id)
    assert _claim(pg_ctx, job_id) is None
    with unit_of_work(pg_ctx.sessions) as s:
        repo.finish_cancelled_or_exhausted(s, now=utcnow())
    job = _get(pg_ctx, job_id)
    assert job.status == JobStatus.failed and job.error_type == "WorkerLost"


def test_the_reaper_sends_one_message_per_job_at_a_time(pg_ctx: Any) -> None:
    now = utcnow()
    lost = _job(pg_ctx, pending_dispatch_at=now - timedelta(minutes=20))  # a broker lost it
    waiting = _job(pg_ctx, pending_dispatch_at=now - timedelta(minutes=5))  # still pending
    undispatched = _job(pg_ctx)  # its message came while the project had no running slot
    with unit_of_work(pg_ctx.sessions) as s:
        repo.mark_undispatched(s, job_id=undispatched)
    expired = _job(pg_ctx)
    _claim(pg_ctx, expired)
    _expire(pg_ctx, expired)
    running = _job(pg_ctx)
    _claim(pg_ctx, running)
    assert _get(pg_ctx, running).pending_dispatch_at is None  # the claim used the message
    with unit_of_work(pg_ctx.sessions) as s:
        ids = repo.jobs_to_redispatch(s, now=utcnow(), orphaned_after_s=600)
    assert set(ids) == {lost, undispatched, expired}
    assert waiting not in ids and running not in ids
    with unit_of_work(pg_ctx.sessions) as s:  # each has a message pending now: none again
        assert repo.jobs_to_redispatch(s, now=utcnow(), orphaned_after_s=600) == []
        assert not repo.mark_dispatched(s, job_id=expired)
        repo.mark_undispatched(s, job_id=expired)
        assert repo.mark_dispatched(s, job_id=expired)


def test_a_job_nobody_takes_after_its_worker_stopped_fails(pg_ctx: Any) -> None:
    job_id = _job(pg_ctx)
    _claim(pg_ctx, job_id)
    _expire(pg_ctx, job_id)
    with unit_of_work(pg_ctx.sessions) as s:
        assert repo.jobs_to_redispatch(s, now=utcnow(), orphaned_after_s=600) == [job_id]
        assert repo.finish_orphaned(s, now=utcnow(), orphaned_after_s=600) == 0
    later = utcnow() + timedelta(seconds=601)
    with unit_of_work(pg_ctx.sessions) as s:
        assert repo.jobs_to_redispatch(s, now=later, orphaned_after_s=600) == []
        assert repo.finish_orphaned(s, now=later, orphaned_after_s=600) == 1
    job = _get(pg_ctx, job_id)
    assert job.status == JobStatus.failed and job.error_type == "WorkerLost"
    assert "no worker took the job" in (job.error_message or "")


def test_a_released_lease_is_taken_at_once_and_a_shutdown_spends_no_attempt(pg_ctx: Any) -> None:
    job_id = _job(pg_ctx, max_attempts=2)
    assert _claim(pg_ctx, job_id) == 1
    with unit_of_work(pg_ctx.sessions) as s:
        assert repo.release_lease(s, job_id=job_id, attempt=1, spent=False)
        assert not repo.release_lease(s, job_id=job_id, attempt=1, spent=False)
    job = _get(pg_ctx, job_id)
    assert job.max_attempts == 3 and job.pending_dispatch_at is not None
    assert _claim(pg_ctx, job_id) == 2  # no wait for a lease to expire


def test_an_attempt_ended_by_a_transient_fault_is_retried_until_attempts_run_out(
    pg_ctx: Any,
) -> None:
    job_id = _job(pg_ctx, max_attempts=2)
    fault = {"error_type": "TransientError", "error_message": "the database connection failed"}
    for attempt, outcome in ((1, "redispatch"), (2, "failed")):
        assert _claim(pg_ctx, job_id) == attempt
        with unit_of_work(pg_ctx.sessions) as s:
            assert repo.end_attempt(s, job_id=job_id, attempt=attempt, **fault) == outcome
    job = _get(pg_ctx, job_id)
    assert job.status == JobStatus.failed and job.error_type == "TransientError"
    assert job.error_message == "the database connection failed"


def test_a_cancel_acknowledged_before_the_final_commit_wins(pg_ctx: Any) -> None:
    job_id = _job(pg_ctx)
    _claim(pg_ctx, job_id)
    with unit_of_work(pg_ctx.sessions) as s:
        repo.request_cancel(s, job_id=job_id, scope=SYSTEM)
    with unit_of_work(pg_ctx.sessions) as s:
        assert repo.cancel_acknowledged(s, job_id=job_id, attempt=1)
        assert not repo.finish_job(s, job_id=job_id, attempt=1, status=JobStatus.succeeded)
        assert repo.finish_job(s, job_id=job_id, attempt=1, status=JobStatus.cancelled)
    assert _get(pg_ctx, job_id).status == JobStatus.cancelled


def test_cancel(pg_ctx: Any) -> None:
    queued = _job(pg_ctx)
    with unit_of_work(pg_ctx.sessions) as s:
        repo.request_cancel(s, job_id=queued, scope=SYSTEM)
    assert _get(pg_ctx, queued).status == JobStatus.cancelled
    assert _claim(pg_ctx, queued) is None
    running = _job(pg_ctx)
    _claim(pg_ctx, running)
    with unit_of_work(pg_ctx.sessions) as s:
        repo.request_cancel(s, job_id=running, scope=SYSTEM)
    job = _get(pg_ctx, running)
    assert job.status == JobStatus.running and job.cancel_requested
    with unit_of_work(pg_ctx.sessions) as s:
        assert repo.renew_lease(s, job_id=running, attempt=1, lease_s=30) is True


def test_one_active_job_per_model_is_enforced_by_the_database(pg_ctx: Any) -> None:
    import pytest
    from sqlalchemy.exc import IntegrityError

    job_id = _job(pg_ctx)
    with unit_of_work(pg_ctx.sessions) as s:
        model_id = _get(pg_ctx, job_id).model_id
    with pytest.raises(IntegrityError), unit_of_work(pg_ctx.sessions) as s:
        repo.add_job(
            s,
            row=JobRow(
                model_id=model_id, project_id=DEFAULT_PROJECT_ID, request={}, data_key="k", epochs=1
            ),
        )
    with unit_of_work(pg_ctx.sessions) as s:
        repo.request_cancel(s, job_id=job_id, scope=SYSTEM)
    with unit_of_work(pg_ctx.sessions) as s:  # a finished job does not count
        repo.add_job(
            s,
            row=JobRow(
                model_id=model_id, project_id=DEFAULT_PROJECT_ID, request={}, data_key="k", epochs=1
            ),
        )


def test_a_checkpoint_of_a_stale_attempt_is_not_registered(pg_ctx: Any) -> None:
    job_id = _job(pg_ctx)
    _claim(pg_ctx, job_id)
    _expire(pg_ctx, job_id)
    _claim(pg_ctx, job_id)
    with unit_of_work(pg_ctx.sessions) as s:
        row = CheckpointRow(job_id=job_id, epoch=0, attempt=1, key="x", size_bytes=1, logs={})
        assert repo.add_checkpoint(s, row=row) is False
        row = CheckpointRow(job_id=job_id, epoch=0, attempt=2, key="y", size_bytes=1, logs={})
        assert repo.add_checkpoint(s, row=row) is True
