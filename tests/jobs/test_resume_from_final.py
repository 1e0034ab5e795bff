"""Resuming from a job's final checkpoint, whose weights the fit's end changed (the EMA
overwrite, EarlyStopping's restored best weights) and whose callbacks had state: the continued
fit equals the uninterrupted longer fit bit for bit, while exports and a next fit see the
weights the fit ended with."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from app.db.models import JobRow
from app.db.scope import SYSTEM
from app.engine.training import checkpoint
from app.jobs import service
from app.jobs.resume import resume_job
from app.jobs.runner import run_fit_job
from app.jobs.schemas import FitRequest, ResumeRequest
from app.models import checkpoints
from tests.jobs.test_resume import COMPILE, X, Y, _assert_same_weights, _logs, _model, _weights

N, K = 6, 3
ADAM = {"class_name": "Adam", "config": {"learning_rate": 0.02}}
EMA = {"class_name": "Adam", "config": {"learning_rate": 0.02, "use_ema": True}}
PLATEAU = {
    "class_name": "ReduceLROnPlateau",
    "config": {"monitor": "loss", "patience": 0, "factor": 0.5, "min_delta": 0.5},
}
BEST = {
    "class_name": "EarlyStopping",
    "config": {"monitor": "val_loss", "patience": 100, "restore_best_weights": True},
}
CASES = {
    "use_ema": {"compile": {**COMPILE, "optimizer": EMA}},
    "plateau_and_best_weights": {
        "compile": {**COMPILE, "optimizer": ADAM},
        "callbacks": [PLATEAU, BEST],
    },
}


def _fit_with(ctx: Any, model_id: uuid.UUID, epochs: int, **extra: Any) -> JobRow:
    body = FitRequest(**{"compile": COMPILE, "x": X.tolist(), "y": Y.tolist(), "batch_size": 16,
                         "epochs": epochs, "validation_split": 0.2, "shuffle": True, "seed": 11,
                         **extra})  # fmt: skip
    job = service.submit_fit(ctx, scope=SYSTEM, model_id=model_id, body=body)
    run_fit_job(ctx, job.id)
    done, _ = service.get_job(ctx, scope=SYSTEM, job_id=job.id)
    assert done.status == "succeeded", done.error_message
    return done


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_from_the_final_checkpoint_is_the_longer_fit(pg_ctx: Any, case: str) -> None:
    extra = CASES[case]
    straight_model = _model(pg_ctx)
    straight = _fit_with(pg_ctx, straight_model, N, **extra)
    model_id = _model(pg_ctx)
    parent = _fit_with(pg_ctx, model_id, K, **extra)
    _, final = checkpoints.resolve(pg_ctx, scope=SYSTEM, job_id=parent.id, selector="latest")
    assert final.trigger == "final"
    tensors, meta = checkpoint.from_bytes(pg_ctx.store.read(final.key))
    if case == "use_ema":  # the overwrite changed the weights: the resume point keeps them
        assert any(k.startswith("resume/model/") for k in tensors)
    else:  # the callbacks' state at the last epoch's end
        assert [c["class_name"] for c in meta["callbacks"]] == ["ReduceLROnPlateau",
                                                              "EarlyStopping"]  # fmt: skip
    held = _weights(pg_ctx, model_id)  # what the model holds (and exports): the fit's end
    at_end = [t.numpy() for k, t in tensors.items() if k.startswith("model/")]
    assert sorted(a.tobytes() for a in at_end) == sorted(h.tobytes() for h in held)

    child = resume_job(pg_ctx, scope=SYSTEM, job_id=parent.id, body=ResumeRequest(epochs=N))
    run_fit_job(pg_ctx, child.id)
    logs = _logs(pg_ctx, straight.id)
    assert _logs(pg_ctx, child.id) == {e: logs[e] for e in range(K, N)}
    _assert_same_weights(_weights(pg_ctx, model_id), _weights(pg_ctx, straight_model))
    job, _ = service.get_job(pg_ctx, scope=SYSTEM, job_id=child.id)
    assert job.status == "succeeded"


def test_a_fit_that_changes_nothing_at_its_end_writes_no_resume_weights(pg_ctx: Any) -> None:
    model_id = _model(pg_ctx)
    parent = _fit_with(pg_ctx, model_id, 2)
    _, final = checkpoints.resolve(pg_ctx, scope=SYSTEM, job_id=parent.id, selector="latest")
    tensors, _ = checkpoint.from_bytes(pg_ctx.store.read(final.key))
    assert not any(k.startswith("resume/") for k in tensors)
    assert np.isfinite(_weights(pg_ctx, model_id)[0]).all()
