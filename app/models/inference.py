"""evaluate, predict, test_on_batch and predict_on_batch on a stored model: on its current
weights, or on the weights of a checkpoint of one of its fit jobs (`checkpoint`, with `job_id`
defaulting to the model's most recent job; see checkpoints). Nothing here writes; the built
models come from the cache, keyed by their weights file, and are only read."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from app.datasets.refs import Resolver, in_memory
from app.db.models import ModelRow
from app.engine import on_batch
from app.engine.errors import EngineError
from app.engine.inference import predict, resolve_device
from app.engine.models import Model
from app.engine.trainer import Trainer
from app.models.checkpoints import checkpoint_key
from app.models.schemas import (
    AtCheckpoint,
    EvaluateRequest,
    PredictOnBatchRequest,
    PredictRequest,
    TestOnBatchRequest,
)
from app.models.service import BODY, compile_spec, get_model, invalid, model_at
from app.models.weights_files import retried
from app.runtime.context import AppContext
from app.runtime.jsonsafe import safe_logs, safe_nested

Outputs = list[Any] | dict[str, list[Any]]


def _model(ctx: AppContext, row: ModelRow, body: AtCheckpoint) -> Model:
    key = checkpoint_key(ctx, row, body)
    return model_at(ctx, row, row.weights_key if key is None else key)


def dtype_policy_of(row: ModelRow) -> str:
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


def resolved(
    ctx: AppContext,
    body: EvaluateRequest | TestOnBatchRequest | PredictRequest | PredictOnBatchRequest,
    *,
    materialize: bool = False,
) -> tuple[Any, Any, Any]:
    """x, y and sample_weight of `body` with dataset references resolved: memory maps read
    batch by batch, or (`materialize`, for the *_on_batch routes, whose data is one batch)
    arrays in memory."""
    refs = Resolver(ctx)
    out = []
    for key in ("x", "y", "sample_weight"):
        value = refs.resolve(getattr(body, key, None), [BODY, key])
        out.append(in_memory(value) if materialize else value)
    return out[0], out[1], out[2]


@retried
def evaluate(
    ctx: AppContext, *, model_id: uuid.UUID, body: EvaluateRequest
) -> dict[str, float | None]:
    x, y, sw = resolved(ctx, body)
    return _scores(ctx, model_id, body, lambda trainer: trainer.evaluate(
        x, y, sample_weight=sw, batch_size=body.batch_size
    ))  # fmt: skip


def _outputs(
    ctx: AppContext,
    model_id: uuid.UUID,
    body: PredictRequest | PredictOnBatchRequest,
    run: Callable[[Model, str], np.ndarray | list[np.ndarray]],
) -> dict[str, np.ndarray]:
    """The outputs of `run` (given the model over the selected weights and the dtype policy of
    its compile spec), keyed by output name in output order."""
    row = get_model(ctx, model_id=model_id)
    model = _model(ctx, row, body)
    try:
        out = run(model, dtype_policy_of(row))
    except EngineError as exc:
        raise invalid(exc, BODY) from exc
    return dict(zip(model.output_names, out if isinstance(out, list) else [out], strict=True))


@retried
def predict_arrays(
    ctx: AppContext, *, model_id: uuid.UUID, body: PredictRequest
) -> dict[str, np.ndarray]:
    """Keras's predict: the outputs keyed by output name, in output order."""
    x, _, _ = resolved(ctx, body)
    return _outputs(ctx, model_id, body, lambda model, policy: predict(
        model, x, batch_size=body.batch_size, dtype_policy=policy
    ))  # fmt: skip


def predict_model(ctx: AppContext, *, model_id: uuid.UUID, body: PredictRequest) -> Outputs:
    """One output's predictions as nested lists; several keyed by output name."""
    return outputs_json(predict_arrays(ctx, model_id=model_id, body=body))


@retried
def test_on_batch(
    ctx: AppContext, *, model_id: uuid.UUID, body: TestOnBatchRequest
) -> dict[str, float | None]:
    x, y, sw = resolved(ctx, body, materialize=True)
    return _scores(ctx, model_id, body, lambda trainer: on_batch.test_on_batch(
        trainer, x, y, sample_weight=sw
    ))  # fmt: skip


@retried
def predict_on_batch(
    ctx: AppContext, *, model_id: uuid.UUID, body: PredictOnBatchRequest
) -> Outputs:
    x, _, _ = resolved(ctx, body, materialize=True)
    return outputs_json(_outputs(ctx, model_id, body, lambda model, policy:
        on_batch.predict_on_batch(model, x, dtype_policy=policy)))  # fmt: skip


def outputs_json(outputs: dict[str, np.ndarray]) -> Outputs:
    """Predictions as Keras returns them, in JSON: one output's as nested lists, several keyed
    by output name; non-finite values as null."""
    if len(outputs) == 1:
        return list(safe_nested(next(iter(outputs.values())).tolist()))
    return {name: list(safe_nested(out.tolist())) for name, out in outputs.items()}
