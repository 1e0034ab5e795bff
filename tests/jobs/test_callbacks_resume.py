"""A job whose worker goes away right after epoch k's checkpoint is redelivered and resumed; with
EarlyStopping (restore_best_weights), ReduceLROnPlateau and ModelCheckpoint the resumed attempt
continues their state, so the job logs the same epochs, stops at the same epoch and ends with the
same weights as an uninterrupted job, bit for bit. On the real Postgres, in-process."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import torch
from sqlalchemy import update

from app.db.base import utcnow
from app.db.models import JobRow
from app.db.scope import SYSTEM
from app.db.session import unit_of_work
from app.engine.training import checkpoint
from app.jobs import repository as repo
from app.jobs import service
from app.jobs.callbacks import EpochLogSink
from app.jobs.resume import resume_job
from app.jobs.runner import run_fit_job
from app.jobs.schemas import FitRequest, ResumeRequest
from app.models import service as models
from app.models.schemas import ModelCreate
from tests.support import scenario

CALLBACKS: list[dict[str, Any]] = [
    {"class_name": "EarlyStopping", "config": {"monitor": "val_loss", "min_delta": 0.005,
                                               "patience": 4, "restore_best_weights": True}},
    {"class_name": "ReduceLROnPlateau", "config": {"monitor": "val_loss", "min_delta": 0.005,
                                                   "factor": 0.5, "patience": 2, "cooldown": 1}},
    {"class_name": "ModelCheckpoint", "config": {"monitor": "val_loss", "save_best_only": True}},
    # Saves every epoch, so the epoch that stops the fit has a checkpoint too.
    {"class_name": "ModelCheckpoint", "config": {"monitor": "loss", "save_freq": "epoch"}},
]  # fmt: skip
EPOCHS = 60  # the fit stops at epoch 31, its best epoch 27
STOP, BEST = 31, 27


def _job(
    ctx: Any, monkeypatch: pytest.MonkeyPatch, *, epochs: int = EPOCHS,
    interrupt_after: int | None = None, callbacks: list[dict[str, Any]] = CALLBACKS,
) -> tuple[Any, list[Any], dict[str, torch.Tensor]]:  # fmt: skip
    """Run a job to the end; with `interrupt_after`, its first attempt leaves right after that
    epoch's checkpoint (as a process that is shutting down does) and a second one resumes."""
    model = models.create_model(ctx, scope=SYSTEM, body=ModelCreate(config=scenario.MODEL, seed=3))
    body = scenario.fit_body(epochs=epochs, callbacks=callbacks, seed=5)
    job = service.submit_fit(ctx, scope=SYSTEM, model_id=model.id, body=FitRequest(**body))
    if interrupt_after is not None:
        original = EpochLogSink.on_epoch_end

        def leave_after(self: EpochLogSink, epoch: int, logs: Any = None) -> None:
            if epoch == interrupt_after:
                ctx.stopping.set()  # the job checkpoints this epoch, then stops the fit
            original(self, epoch, logs)

        with monkeypatch.context() as patch:
            patch.setattr(EpochLogSink, "on_epoch_end", leave_after)
            run_fit_job(ctx, job.id)
        ctx.stopping.clear()
        left, rows = service.get_job(ctx, scope=SYSTEM, job_id=job.id)
        assert left.status == "running" and left.attempt == 1, left.error_message
        assert [r.epoch for r in rows] == list(range(interrupt_after + 1))
        with unit_of_work(ctx.sessions) as s:
            resume = repo.latest_checkpoint(s, job_id=job.id)
            assert resume is not None and resume.epoch == interrupt_after
            # The worker is gone: its lease runs out, and the redelivery claims the job.
            s.execute(update(JobRow).where(JobRow.id == job.id)
                      .values(lease_expires_at=utcnow() - timedelta(seconds=1)))  # fmt: skip
        _, meta = checkpoint.from_bytes(ctx.store.read(resume.key))
        assert [e["class_name"] for e in meta["callbacks"]] == [c["class_name"] for c in callbacks]
    run_fit_job(ctx, job.id)
    done, rows = service.get_job(ctx, scope=SYSTEM, job_id=job.id)
    assert done.status == "succeeded", done.error_message
    stored = models.get_model(ctx, scope=SYSTEM, model_id=model.id)
    assert stored.weights_key is not None
    tensors, _ = checkpoint.from_bytes(ctx.store.read(stored.weights_key))
    return done, rows, {k: t for k, t in tensors.items() if k.startswith("model/")}


def _assert_same_job(a: tuple[Any, list[Any], Any], b: tuple[Any, list[Any], Any]) -> None:
    (job_a, rows_a, weights_a), (job_b, rows_b, weights_b) = a, b
    assert [r.epoch for r in rows_a] == [r.epoch for r in rows_b]
    assert [r.logs for r in rows_a] == [r.logs for r in rows_b]  # learning_rate included
    assert job_a.epochs_done == job_b.epochs_done
    assert weights_a.keys() == weights_b.keys()
    for name, t in weights_a.items():
        assert torch.equal(t, weights_b[name]), name


# 2: EarlyStopping and ReduceLROnPlateau waiting; 3 and 29: ReduceLROnPlateau cooling down
# after a reduction; 31: the epoch EarlyStopping stopped the fit (the resumed attempt runs no
# further epoch and restores the best weights).
@pytest.mark.parametrize("k", [2, 3, 29, STOP])
def test_a_resumed_attempt_stops_where_the_uninterrupted_job_stops(
    pg_ctx: Any, monkeypatch: pytest.MonkeyPatch, k: int
) -> None:
    straight = _job(pg_ctx, monkeypatch)
    _, rows, _ = straight
    assert len(rows) == STOP + 1  # stopped early
    rates = [r.logs["learning_rate"] for r in rows]
    assert rates[3] == rates[2] > rates[4] and rates[29] > rates[30]  # reduced, then cooled
    resumed = _job(pg_ctx, monkeypatch, interrupt_after=k)
    _assert_same_job(resumed, straight)
    assert {r.attempt for r in resumed[1]} == ({1, 2} if k < STOP else {1})
    assert resumed[0].attempt == 2


def test_a_resume_at_the_last_epoch_still_restores_the_best_weights(
    pg_ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint of the last epoch leaves no epoch to run; the resumed attempt still ends
    the fit (EarlyStopping puts back the best epoch's weights)."""
    epochs = BEST + 2  # ends before EarlyStopping would stop, one epoch after the best
    straight = _job(pg_ctx, monkeypatch, epochs=epochs)
    resumed = _job(pg_ctx, monkeypatch, epochs=epochs, interrupt_after=epochs - 1)
    _assert_same_job(resumed, straight)
    with unit_of_work(pg_ctx.sessions) as s:
        ckpts = repo.list_checkpoints(s, job_id=resumed[0].id)
    last = max((c for c in ckpts if c.trigger != "final"), key=lambda c: c.epoch)
    tensors, _ = checkpoint.from_bytes(pg_ctx.store.read(last.key))
    # The last epoch's own weights are not the job's final (best) weights.
    assert any(not torch.equal(tensors[k], t) for k, t in resumed[2].items())


def test_a_new_job_resumed_where_a_callback_stopped_its_parent_trains_on(
    pg_ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resuming a finished job from the checkpoint of the epoch EarlyStopping stopped it at
    starts a new fit: the callbacks keep their state (EarlyStopping has waited its patience,
    so the first epoch without improvement stops it), but the parent's stop is not this fit's."""
    parent, rows, _ = _job(pg_ctx, monkeypatch)
    with unit_of_work(pg_ctx.sessions) as s:
        (saved,) = [c for c in repo.list_checkpoints(s, job_id=parent.id)
                    if c.epoch == STOP and c.trigger == "model_checkpoint"]  # fmt: skip
    child = resume_job(pg_ctx, scope=SYSTEM, job_id=parent.id,
                       body=ResumeRequest(checkpoint=str(saved.id), epochs=EPOCHS))  # fmt: skip
    run_fit_job(pg_ctx, child.id)
    done, child_rows = service.get_job(pg_ctx, scope=SYSTEM, job_id=child.id)
    assert done.status == "succeeded", done.error_message
    assert child_rows and child_rows[0].epoch == STOP + 1
    # ReduceLROnPlateau carried on from its state too: the rate is where the parent left it.
    assert child_rows[0].logs["learning_rate"] <= rows[-1].logs["learning_rate"]


def test_mid_epoch_saves_fall_on_the_same_batches_after_a_resume(
    pg_ctx: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ModelCheckpoint's count of batches runs across epochs and across the resume; its
    mid-epoch saves (checkpoints too, with callback state, but never resume points) leave the
    resume at the epoch-end checkpoint."""
    every_3 = {"class_name": "ModelCheckpoint", "config": {"monitor": "loss", "save_freq": 3}}
    cbs = [CALLBACKS[0], every_3]  # 4 batches an epoch: saves fall at changing batch indices
    straight = _job(pg_ctx, monkeypatch, callbacks=cbs)
    resumed = _job(pg_ctx, monkeypatch, callbacks=cbs, interrupt_after=4)
    _assert_same_job(resumed, straight)

    def saves(job_id: Any) -> list[tuple[int, int | None]]:
        with unit_of_work(pg_ctx.sessions) as s:
            rows = repo.list_checkpoints(s, job_id=job_id)
        return sorted((c.epoch, c.batch) for c in rows if c.trigger == "model_checkpoint")

    assert saves(resumed[0].id) == saves(straight[0].id)
    assert len(saves(straight[0].id)) == len(straight[1]) * 4 // 3
