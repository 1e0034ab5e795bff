"""evaluate, predict, test_on_batch and predict_on_batch on a stored model: on its current
weights, or on the weights of a checkpoint of one of its fit jobs (`checkpoint`, with `job_id`
defaulting to the model's most recent job). Nothing here writes; the built models come from the
cache, keyed by their weights file, and are only read."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from app.core.errors import InvalidInput, NotFound
from app.db.models import ModelRow
from app.db.session import unit_of_work
from app.engine import on_batch
from app.engine.errors import EngineError
from app.engine.inference import predict, resolve_device
from app.engine.models import Model
from app.engine.trainer import Trainer
from app.jobs import checkpoints
from app.jobs import repository as repo
from app.jobs.batch_schemas import (
    AtCheckpoint,
    EvaluateRequest,
    PredictOnBatchRequest,
    PredictRequest,
    TestOnBatchRequest,
)
from app.jobs.jsonsafe import safe_logs, safe_nested
from app.jobs.service import BODY, compile_spec, get_model, invalid, model_at
from app.jobs.weights_files import retried
from app.runtime.context import AppContext

Outputs = list[Any] | dict[str, list[Any]]


def checkpoint_key(ctx: AppContext, row: ModelRow, body: AtCheckpoint) -> str | None:
    """The weights file of the checkpoint a request selects; None when it selects none."""
    if body.checkpoint is None:
        if body.job_id is not None:
            raise InvalidInput("names a job but no checkpoint: give `checkpoint` too (an id, "
                               "epoch:N, latest or best)", loc=[BODY, "job_id"])  # fmt: skip
        return None
    job_id = body.job_id
    with unit_of_work(ctx.sessions) as session:
        if job_id is None:
            jobs = repo.list_jobs(session, model_id=row.id, limit=1, offset=0)
            if not jobs:
                raise NotFound(f"model {row.id} has no fit job to take a checkpoint from",
                               loc=[BODY, "checkpoint"])  # fmt: skip
            job_id = jobs[0].id
        else:
            job = repo.get_job(session, job_id=job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist", loc=[BODY, "job_id"])
            if job.model_id != row.id:
                raise InvalidInput(f"job {job_id} is a job of model {job.model_id}, not of "
                                   f"model {row.id}", loc=[BODY, "job_id"])  # fmt: skip
    _, found = checkpoints.resolve(
        ctx, job_id=job_id, selector=body.checkpoint, loc=[BODY, "checkpoint"]
    )
    return found.key


def _model(ctx: AppContext, row: ModelRow, body: AtCheckpoint) -> Model:
    key = checkpoint_key(ctx, row, body)
    return model_at(ctx, row, row.weights_key if key is None else key)


def _policy(row: ModelRow) -> str:
    """The dtype policy of the model's compile spec (predict takes none of its own)."""
    policy = (row.compile_config or {}).get("dtype_policy")
    return policy if isinstance(policy, str) else "float32"


def _scores(
    ctx: AppContext,
    model_id: uuid.UUID,
    body: EvaluateRequest | TestOnBatchRequest,
    run: Callable[[Trainer], dict[str, float]],
) -> dict[str, float | None]:
    """Loss and metrics of `run` on a trainer over the selected weights and compile spec."""
    row = get_model(ctx, model_id=model_id)
    spec = compile_spec(row, body.compile)
    model = _model(ctx, row, body)
    try:
        return safe_logs(run(Trainer(model, spec, device=resolve_device(ctx.settings.device))))
    except EngineError as exc:
        raise invalid(exc, BODY) from exc


@retried
def evaluate(
    ctx: AppContext, *, model_id: uuid.UUID, body: EvaluateRequest
) -> dict[str, float | None]:
    return _scores(ctx, model_id, body, lambda trainer: trainer.evaluate(
        body.x, body.y, sample_weight=body.sample_weight, batch_size=body.batch_size
    ))  # fmt: skip


def _outputs(
    ctx: AppContext,
    model_id: uuid.UUID,
    body: PredictRequest | PredictOnBatchRequest,
    run: Callable[[Model, str], np.ndarray | list[np.ndarray]],
) -> Outputs:
    """The outputs of `run` (given the model over the selected weights and the dtype policy of
    its compile spec) as JSON."""
    row = get_model(ctx, model_id=model_id)
    model = _model(ctx, row, body)
    try:
        return outputs_json(model, run(model, _policy(row)))
    except EngineError as exc:
        raise invalid(exc, BODY) from exc


@retried
def predict_model(ctx: AppContext, *, model_id: uuid.UUID, body: PredictRequest) -> Outputs:
    """One output's predictions as nested lists; several keyed by output name."""
    return _outputs(ctx, model_id, body, lambda model, policy: predict(
        model, body.x, batch_size=body.batch_size, dtype_policy=policy
    ))  # fmt: skip


@retried
def test_on_batch(
    ctx: AppContext, *, model_id: uuid.UUID, body: TestOnBatchRequest
) -> dict[str, float | None]:
    return _scores(ctx, model_id, body, lambda trainer: on_batch.test_on_batch(
        trainer, body.x, body.y, sample_weight=body.sample_weight
    ))  # fmt: skip


@retried
def predict_on_batch(
    ctx: AppContext, *, model_id: uuid.UUID, body: PredictOnBatchRequest
) -> Outputs:
    return _outputs(ctx, model_id, body, lambda model, policy: on_batch.predict_on_batch(
        model, body.x, dtype_policy=policy
    ))  # fmt: skip


def outputs_json(model: Model, outputs: np.ndarray | list[np.ndarray]) -> Outputs:
    """Predictions as Keras returns them, in JSON: one output's as nested lists, several keyed
    by output name; non-finite values as null."""
    if isinstance(outputs, list):
        return {name: list(safe_nested(out.tolist()))
                for name, out in zip(model.output_names, outputs, strict=True)}  # fmt: skip
    return list(safe_nested(outputs.tolist()))
