"""CHECKPOINT_KEEP: a job keeps only its newest periodic checkpoints (rows and files), never a
ModelCheckpoint save or the final checkpoint, and still resumes exactly from what it kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from app.db.scope import SYSTEM
from app.jobs import service
from app.jobs.resume import resume_job
from app.jobs.runner import run_fit_job
from app.jobs.schemas import FitRequest, ResumeRequest
from app.models import checkpoints
from tests.jobs.test_resume import COMPILE, X, Y, _assert_same_weights, _logs, _model, _weights

SAVE_EVERY_OTHER_EPOCH = {"class_name": "ModelCheckpoint",
                          "config": {"filepath": "m.keras", "save_freq": 6}}  # fmt: skip


def _fit(ctx: Any, epochs: int, **extra: Any) -> Any:
    model_id = _model(ctx)
    body = FitRequest(compile=COMPILE, x=X.tolist(), y=Y.tolist(), batch_size=16, epochs=epochs,
                      validation_split=0.2, shuffle=True, seed=11, **extra)  # fmt: skip
    job = service.submit_fit(ctx, scope=SYSTEM, model_id=model_id, body=body)
    run_fit_job(ctx, job.id)
    done, _ = service.get_job(ctx, scope=SYSTEM, job_id=job.id)
    assert done.status == "succeeded", done.error_message
    return model_id, done


def test_only_the_newest_periodic_checkpoints_are_kept(pg_ctx: Any) -> None:
    pg_ctx.settings.checkpoint_keep = 2
    _, job = _fit(pg_ctx, 6, callbacks=[SAVE_EVERY_OTHER_EPOCH])  # 3 batches an epoch
    _, rows = service.list_checkpoints(pg_ctx, scope=SYSTEM, job_id=job.id)
    periodic = sorted(r.epoch for r in rows if r.trigger == "periodic")
    assert periodic == [4, 5]
    assert sorted(r.epoch for r in rows if r.trigger == "model_checkpoint") == [1, 3, 5]
    assert [r.trigger for r in rows].count("final") == 1
    on_disk = {p.name for p in Path(pg_ctx.settings.data_dir).rglob("*.safetensors")
               if f"jobs/{job.id}" in p.as_posix()}  # fmt: skip
    assert on_disk - {"inputs.safetensors"} == {Path(r.key).name for r in rows}


def test_a_job_resumes_exactly_from_a_kept_checkpoint(pg_ctx: Any) -> None:
    straight_model, straight = _fit(pg_ctx, 6)
    pg_ctx.settings.checkpoint_keep = 1
    model_id, parent = _fit(pg_ctx, 4)
    _, rows = service.list_checkpoints(pg_ctx, scope=SYSTEM, job_id=parent.id)
    assert sorted((r.trigger, r.epoch) for r in rows) == [("final", 3), ("periodic", 3)]
    child = resume_job(pg_ctx, scope=SYSTEM, job_id=parent.id, body=ResumeRequest(epochs=6))
    run_fit_job(pg_ctx, child.id)
    logs = _logs(pg_ctx, straight.id)
    assert _logs(pg_ctx, child.id) == {e: logs[e] for e in (4, 5)}
    _assert_same_weights(_weights(pg_ctx, model_id), _weights(pg_ctx, straight_model))


def test_the_best_periodic_checkpoint_is_kept(pg_ctx: Any) -> None:
    """Without a ModelCheckpoint, `best` is the checkpoint with the lowest val_loss; pruning
    keeps it (one checkpoint more than CHECKPOINT_KEEP at most), so `best` names the same
    checkpoint as without pruning."""
    pg_ctx.settings.checkpoint_keep = 1
    y = Y.copy()
    y[-len(y) // 5 :] = 1.0 - y[-len(y) // 5 :]  # the validation labels inverted: it overfits
    model_id = _model(pg_ctx)
    body = FitRequest(compile=COMPILE, x=X.tolist(), y=y.tolist(), batch_size=16, epochs=6,
                      validation_split=0.2, shuffle=True, seed=11)  # fmt: skip
    job = service.submit_fit(pg_ctx, scope=SYSTEM, model_id=model_id, body=body)
    run_fit_job(pg_ctx, job.id)
    val_loss = [logs["val_loss"] for logs in _logs(pg_ctx, job.id).values()]
    best_epoch = int(np.argmin(val_loss))
    assert best_epoch < 4  # not among the newest periodic checkpoint and the final
    _, best = checkpoints.resolve(pg_ctx, scope=SYSTEM, job_id=job.id, selector="best")
    assert (best.epoch, best.trigger) == (best_epoch, "periodic")
    _, rows = service.list_checkpoints(pg_ctx, scope=SYSTEM, job_id=job.id)
    assert sorted((r.trigger, r.epoch) for r in rows) == sorted(
        [("final", 5), ("periodic", 5), ("periodic", best_epoch)]
    )
    assert pg_ctx.store.exists(best.key)
