"""Resuming a finished job from one of its checkpoints, on the real Postgres, in-process: the
continued fit equals an uninterrupted one bit for bit (shuffle, dropout, Adam with a schedule),
from a succeeded or a cancelled parent and across a crashed attempt of the child; and what is
refused, with the field named."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from sqlalchemy import update

from app.core.errors import Conflict, InvalidInput, NotFound
from app.db.base import utcnow
from app.db.models import JobRow
from app.db.scope import SYSTEM
from app.db.session import unit_of_work
from app.jobs import repository as repo
from app.jobs import service
from app.jobs.callbacks import CancellationCheck
from app.jobs.resume import resume_job
from app.jobs.runner import run_fit_job
from app.jobs.schemas import FitRequest, ResumeRequest
from app.models import checkpoints
from app.models import repository as models_repo
from app.models import service as models
from app.models.schemas import ModelCreate
from tests.support.keras_fit import sequential

RNG = np.random.default_rng(7)
X = RNG.normal(size=(60, 3)).astype(np.float32)
Y = (X[:, :1] - X[:, 1:2] > 0).astype(np.float32)
MODEL = sequential([("Dense", {"units": 8, "activation": "relu"}), ("Dropout", {"rate": 0.3}),
                    ("Dense", {"units": 1, "activation": "sigmoid"})], [None, 3])  # fmt: skip
DECAY = {"initial_learning_rate": 0.05, "decay_steps": 5, "decay_rate": 0.8}
SCHEDULE = {"class_name": "ExponentialDecay", "config": DECAY}
COMPILE = {"optimizer": {"class_name": "Adam", "config": {"learning_rate": SCHEDULE}},
           "loss": "binary_crossentropy", "metrics": ["accuracy"]}  # fmt: skip
N = 7


def _body(epochs: int, **extra: Any) -> FitRequest:
    return FitRequest(compile=COMPILE, x=X.tolist(), y=Y.tolist(), batch_size=16, epochs=epochs,
                      validation_split=0.2, shuffle=True, seed=11, **extra)  # fmt: skip


def _model(ctx: Any) -> uuid.UUID:
    return models.create_model(ctx, scope=SYSTEM, body=ModelCreate(config=MODEL, seed=4)).id


def _fit(ctx: Any, model_id: uuid.UUID, epochs: int, **extra: Any) -> JobRow:
    job = service.submit_fit(ctx, scope=SYSTEM, model_id=model_id, body=_body(epochs, **extra))
    run_fit_job(ctx, job.id)
    return _done(ctx, job.id)


def _done(ctx: Any, job_id: uuid.UUID, status: str = "succeeded") -> JobRow:
    job, _ = service.get_job(ctx, scope=SYSTEM, job_id=job_id)
    assert job.status == status, job.error_message
    return job


def _logs(ctx: Any, job_id: uuid.UUID) -> dict[int, dict[str, float | None]]:
    return {r.epoch: r.logs for r in service.job_logs(ctx, scope=SYSTEM, job_id=job_id, after=-1)}


def _weights(ctx: Any, model_id: uuid.UUID) -> list[np.ndarray]:
    row = models.get_model(ctx, scope=SYSTEM, model_id=model_id)
    return models.model_with_weights(ctx, row).get_weights()


def _assert_same_weights(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)  # bit for bit


@pytest.fixture
def straight(pg_ctx: Any) -> tuple[dict[int, dict[str, float | None]], list[np.ndarray]]:
    """The uninterrupted fit of N epochs: its logs by epoch and its final weights."""
    model_id = _model(pg_ctx)
    job = _fit(pg_ctx, model_id, N)
    return _logs(pg_ctx, job.id), _weights(pg_ctx, model_id)


@pytest.mark.parametrize("k", [1, 3])
def test_fit_to_k_then_resume_to_n_is_the_uninterrupted_fit(
    pg_ctx: Any, straight: Any, k: int
) -> None:
    straight_logs, straight_weights = straight
    model_id = _model(pg_ctx)
    parent = _fit(pg_ctx, model_id, k)
    assert _logs(pg_ctx, parent.id) == {e: straight_logs[e] for e in range(k)}
    child = resume_job(pg_ctx, scope=SYSTEM, job_id=parent.id,
                       body=ResumeRequest(checkpoint=f"epoch:{k - 1}", epochs=N))  # fmt: skip
    assert (child.parent_job_id, child.epochs, child.epochs_done) == (parent.id, N, k)
    assert child.request["fit"]["initial_epoch"] == k
    _, start = checkpoints.resolve(
        pg_ctx, scope=SYSTEM, job_id=parent.id, selector=f"epoch:{k - 1}"
    )
    assert child.start_checkpoint_id == start.id
    run_fit_job(pg_ctx, child.id)
    done = _done(pg_ctx, child.id)
    assert done.epochs_done == N and done.attempt == 1
    # The child's rows are its own epochs, k..N-1, equal to the uninterrupted fit's.
    assert _logs(pg_ctx, child.id) == {e: straight_logs[e] for e in range(k, N)}
    _, rows = service.get_job(pg_ctx, scope=SYSTEM, job_id=child.id)
    assert len(service.history(rows)["loss"]) == N - k
    _assert_same_weights(_weights(pg_ctx, model_id), straight_weights)
    with unit_of_work(pg_ctx.sessions) as s:  # the model holds the child's final checkpoint
        final = repo.latest_checkpoint(s, job_id=child.id)
        model = models_repo.get_model(s, model_id=model_id, scope=SYSTEM)
    assert final is not None and model is not None and model.weights_checkpoint_id == final.id
    assert _logs(pg_ctx, parent.id) == {e: straight_logs[e] for e in range(k)}  # untouched


@contextmanager
def _after_epoch(epoch: int, act: Callable[[Any], None]) -> Iterator[None]:
    """Run `act(check)` as the job's CancellationCheck reaches the end of `epoch` (before it
    checks for a cancel or a shutdown): an interruption at a known point, without timing."""
    original = CancellationCheck.on_epoch_end

    def on_epoch_end(self: Any, at: int, logs: Any = None) -> None:
        if at == epoch:
            act(self)
        original(self, at, logs)

    CancellationCheck.on_epoch_end = on_epoch_end  # type: ignore[method-assign]
    try:
        yield
    finally:
        CancellationCheck.on_epoch_end = original  # type: ignore[method-assign]


def test_resume_a_cancelled_job_from_its_latest_checkpoint(pg_ctx: Any, straight: Any) -> None:
    straight_logs, straight_weights = straight
    model_id = _model(pg_ctx)
    job = service.submit_fit(pg_ctx, scope=SYSTEM, model_id=model_id, body=_body(10_000))

    def cancel(check: Any) -> None:
        service.cancel_job(pg_ctx, scope=SYSTEM, job_id=job.id)
        check.heartbeat.beat()  # the worker sees the flag now, not at its next heartbeat

    with _after_epoch(2, cancel):
        run_fit_job(pg_ctx, job.id)
    assert _done(pg_ctx, job.id, "cancelled").epochs_done == 3
    with unit_of_work(pg_ctx.sessions) as s:
        latest = repo.latest_checkpoint(s, job_id=job.id)
    assert latest is not None and latest.epoch == 2
    child = resume_job(
        pg_ctx, scope=SYSTEM, job_id=job.id, body=ResumeRequest(epochs=N)
    )  # from `latest`
    assert child.start_checkpoint_id == latest.id
    run_fit_job(pg_ctx, child.id)
    _done(pg_ctx, child.id)
    assert _logs(pg_ctx, child.id) == {e: straight_logs[e] for e in range(3, N)}
    _assert_same_weights(_weights(pg_ctx, model_id), straight_weights)
    models.delete_model(
        pg_ctx, scope=SYSTEM, model_id=model_id
    )  # the parent and its child go together
    with pytest.raises(NotFound):
        service.get_job(pg_ctx, scope=SYSTEM, job_id=child.id)


def test_a_crashed_attempt_of_a_resumed_job_resumes_from_its_own_checkpoint(
    pg_ctx: Any, straight: Any
) -> None:
    straight_logs, straight_weights = straight
    model_id = _model(pg_ctx)
    parent = _fit(pg_ctx, model_id, 1)
    child = resume_job(pg_ctx, scope=SYSTEM, job_id=parent.id, body=ResumeRequest(epochs=N))
    with _after_epoch(2, lambda _: pg_ctx.stopping.set()):  # the process goes down
        run_fit_job(pg_ctx, child.id)
    pg_ctx.stopping.clear()
    assert _done(pg_ctx, child.id, "running").attempt == 1
    with unit_of_work(pg_ctx.sessions) as s:
        own = repo.latest_checkpoint(s, job_id=child.id)
        assert own is not None and own.epoch == 2  # epochs 1 and 2 ran, checkpointed each
        s.execute(update(JobRow).where(JobRow.id == child.id).values(lease_expires_at=utcnow()))
    run_fit_job(pg_ctx, child.id)  # redelivered: attempt 2 starts from the child's epoch 2
    assert _done(pg_ctx, child.id).attempt == 2
    rows = service.job_logs(pg_ctx, scope=SYSTEM, job_id=child.id, after=-1)
    assert [(r.epoch, r.attempt) for r in rows] == [(1, 1), (2, 1)] + [(e, 2) for e in range(3, N)]
    assert _logs(pg_ctx, child.id) == {e: straight_logs[e] for e in range(1, N)}
    _assert_same_weights(_weights(pg_ctx, model_id), straight_weights)


# -- refusals ----------------------------------------------------------------------------------
def _loc(exc: pytest.ExceptionInfo[Any]) -> list[str | int]:
    return list(exc.value.loc)


def test_unknown_job_is_404(pg_ctx: Any) -> None:
    with pytest.raises(NotFound) as exc:
        resume_job(pg_ctx, scope=SYSTEM, job_id=uuid.uuid4(), body=ResumeRequest())
    assert _loc(exc) == ["path", "job_id"]


def test_an_active_parent_or_a_busy_model_is_409(pg_ctx: Any, monkeypatch: Any) -> None:
    model_id = _model(pg_ctx)
    queued = service.submit_fit(pg_ctx, scope=SYSTEM, model_id=model_id, body=_body(2))
    with pytest.raises(Conflict, match="is queued") as exc:
        resume_job(pg_ctx, scope=SYSTEM, job_id=queued.id, body=ResumeRequest(epochs=5))
    assert _loc(exc) == ["path", "job_id"]
    with unit_of_work(pg_ctx.sessions) as s:
        s.execute(update(JobRow).where(JobRow.id == queued.id).values(status="running"))
    with pytest.raises(Conflict, match="is running"):
        resume_job(pg_ctx, scope=SYSTEM, job_id=queued.id, body=ResumeRequest(epochs=5))
    with unit_of_work(pg_ctx.sessions) as s:
        s.execute(update(JobRow).where(JobRow.id == queued.id).values(status="queued"))
    run_fit_job(pg_ctx, queued.id)
    parent = _done(pg_ctx, queued.id)
    other = service.submit_fit(
        pg_ctx, scope=SYSTEM, model_id=model_id, body=_body(2)
    )  # queued on the model
    with pytest.raises(Conflict, match="already training"):
        resume_job(pg_ctx, scope=SYSTEM, job_id=parent.id, body=ResumeRequest(epochs=5))
    # A race the check loses: the one-active-job-per-model index refuses the row.
    monkeypatch.setattr(models_repo, "active_job_of_model", lambda *a, **k: None)
    with pytest.raises(Conflict, match="already training"):
        resume_job(pg_ctx, scope=SYSTEM, job_id=parent.id, body=ResumeRequest(epochs=5))
    monkeypatch.undo()
    run_fit_job(pg_ctx, other.id)
    child = resume_job(pg_ctx, scope=SYSTEM, job_id=parent.id, body=ResumeRequest(epochs=5))
    assert child.status == "queued"
    jobs = service.list_jobs(pg_ctx, scope=SYSTEM, model_id=model_id, limit=10, offset=0)
    assert len(jobs) == 3  # nothing half-written by the refusals


def test_bad_checkpoints_and_no_epochs_left_are_422(pg_ctx: Any) -> None:
    pg_ctx.settings.checkpoint_every_s = 1e9  # only the callback's saves and the final one
    mid_epoch = {"class_name": "ModelCheckpoint", "config": {"save_freq": 2, "monitor": "loss"}}
    each_epoch = {"class_name": "ModelCheckpoint", "config": {"monitor": "loss"}}
    model_id = _model(pg_ctx)
    parent = _fit(pg_ctx, model_id, 3, callbacks=[mid_epoch, each_epoch])  # 3 batches an epoch
    rows = service.list_checkpoints(pg_ctx, scope=SYSTEM, job_id=parent.id)[1]
    mid = next(r for r in rows if r.batch is not None)
    cases = [
        (ResumeRequest(checkpoint="nope"), "body.checkpoint", "not a checkpoint selector"),
        (ResumeRequest(checkpoint="epoch:9", epochs=20), "body.checkpoint", "no checkpoint"),
        (ResumeRequest(checkpoint=str(uuid.uuid4())), "body.checkpoint", "no checkpoint"),
        (ResumeRequest(checkpoint=str(mid.id), epochs=9), "body.checkpoint", "mid-epoch"),
        (ResumeRequest(checkpoint="epoch:0"), None, None),  # the parent's 3 epochs: 1 and 2 left
        (ResumeRequest(), "body.epochs", "the parent's, 3"),  # latest is epoch 2: none left
        (ResumeRequest(checkpoint="epoch:1", epochs=2), "body.epochs", "must exceed 2"),
    ]
    for body, loc, message in cases:
        if loc is None:
            continue
        with pytest.raises(InvalidInput) as exc:
            resume_job(pg_ctx, scope=SYSTEM, job_id=parent.id, body=body)
        assert ".".join(map(str, _loc(exc))) == loc and message in exc.value.message, body
    assert len(service.list_jobs(pg_ctx, scope=SYSTEM, model_id=model_id, limit=10, offset=0)) == 1
    child = resume_job(
        pg_ctx, scope=SYSTEM, job_id=parent.id, body=ResumeRequest(checkpoint="epoch:0")
    )
    assert (child.epochs, child.request["fit"]["initial_epoch"]) == (3, 1)
