"""evaluate, predict, test_on_batch and predict_on_batch on a stored model: on its current
weights, or on the weights of a checkpoint of one of its fit jobs (`checkpoint`, with `job_id`
defaulting to the model's most recent job; see checkpoints). Nothing here writes; the built
models come from the cache, keyed by their weights file, and are only read."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from app.datasets.refs import Resolver, in_memory
from app.db.models import ModelRow
from app.db.scope import Scope
from app.engine.config.errors import EngineError
from app.engine.models.model import Model
from app.engine.training import on_batch
from app.engine.training.inference import model_inputs, predict_batches, resolve_device
from app.engine.training.trainer import Trainer
from app.models.checkpoints import checkpoint_key
from app.models.cost import Deadline, check_sync_cost
from app.models.schemas import (
    AtCheckpoint,
    EvaluateRequest,
    PredictOnBatchRequest,
    PredictRequest,
    TestOnBatchRequest,
)
from app.models.service import BODY, compile_spec, get_model, invalid, model_at
from app.models.weights_files import on_fresh_row, retried
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
    row: ModelRow,
    body: EvaluateRequest | TestOnBatchRequest,
    run: Callable[[Trainer], dict[str, float]],
) -> dict[str, float | None]:
    """Loss and metrics of `run` on a trainer over the selected weights and compile spec."""
    spec = compile_spec(row, body.compile)
    model = _model(ctx, row, body)
    try:
        return safe_logs(run(Trainer(model, spec, device=resolve_device(ctx.settings.device))))
    except EngineError as exc:
        raise invalid(exc, BODY) from exc


def resolved(
    ctx: AppContext,
    row: ModelRow,
    body: EvaluateRequest | TestOnBatchRequest | PredictRequest | PredictOnBatchRequest,
) -> tuple[Any, Any, Any]:
    """x, y and sample_weight of `body` with dataset references (of the model's project)
    resolved to memory maps, read batch by batch (the *_on_batch routes, whose data is one
    batch, read them into memory once their cost is known)."""
    refs = Resolver(ctx, scope=Scope.of_project(row.project_id))
    out = [refs.resolve(getattr(body, key, None), [BODY, key])
           for key in ("x", "y", "sample_weight")]  # fmt: skip
    return out[0], out[1], out[2]


def evaluate(
    ctx: AppContext,
    *,
    scope: Scope,
    model_id: uuid.UUID,
    body: EvaluateRequest,
    row: ModelRow | None = None,
) -> dict[str, float | None]:
    """Keras's evaluate(..., return_dict=True). `row`: the model's row, when the caller has
    just read it (see on_fresh_row)."""

    def run(row: ModelRow) -> dict[str, float | None]:
        x, y, sw = resolved(ctx, row, body)
        deadline = Deadline(ctx.settings, "evaluate")
        return _scores(ctx, row, body, lambda trainer: trainer.evaluate(
            x, y, sample_weight=sw, batch_size=body.batch_size, callbacks=[deadline]
        ))  # fmt: skip

    return on_fresh_row(partial(get_model, ctx, scope=scope, model_id=model_id), run, row)


def _outputs(
    ctx: AppContext,
    row: ModelRow,
    body: PredictRequest | PredictOnBatchRequest,
    run: Callable[[Model, str], np.ndarray | list[np.ndarray]],
) -> dict[str, np.ndarray]:
    """The outputs of `run` (given the model over the selected weights and the dtype policy of
    its compile spec), keyed by output name in output order."""
    model = _model(ctx, row, body)
    try:
        out = run(model, dtype_policy_of(row))
    except EngineError as exc:
        raise invalid(exc, BODY) from exc
    return dict(zip(model.output_names, out if isinstance(out, list) else [out], strict=True))


def predict_arrays(
    ctx: AppContext,
    *,
    scope: Scope,
    model_id: uuid.UUID,
    body: PredictRequest,
    row: ModelRow | None = None,
) -> dict[str, np.ndarray]:
    """Keras's predict: the outputs keyed by output name, in output order. `row`: the model's
    row, when the caller has just read it (see on_fresh_row)."""
    read = partial(get_model, ctx, scope=scope, model_id=model_id)
    return on_fresh_row(read, lambda row: _predict_arrays(ctx, row, body), row)


def _predict_arrays(ctx: AppContext, row: ModelRow, body: PredictRequest) -> dict[str, np.ndarray]:
    x, _, _ = resolved(ctx, row, body)
    deadline = Deadline(ctx.settings, "predict")

    def run(model: Model, policy: str) -> list[np.ndarray]:
        # Keras's predict, one batch at a time, so that the deadline is checked between them.
        batches = predict_batches(model, model_inputs(model, x, ()), batch_size=body.batch_size,
                                  dtype_policy=policy)  # fmt: skip
        parts = []
        try:
            for part in batches:
                parts.append(part)
                deadline.stop_if_past()
        finally:
            batches.close()
        return [np.concatenate(col) for col in zip(*parts, strict=True)]

    return _outputs(ctx, row, body, run)


def predict_model(
    ctx: AppContext, *, scope: Scope, model_id: uuid.UUID, body: PredictRequest
) -> Outputs:
    """One output's predictions as nested lists; several keyed by output name."""
    return outputs_json(predict_arrays(ctx, scope=scope, model_id=model_id, body=body))


@retried
def test_on_batch(
    ctx: AppContext, *, scope: Scope, model_id: uuid.UUID, body: TestOnBatchRequest
) -> dict[str, float | None]:
    row = get_model(ctx, scope=scope, model_id=model_id)
    x, y, sw = resolved(ctx, row, body)  # read into memory once the cost is known

    def run(trainer: Trainer) -> dict[str, float]:
        check_sync_cost(ctx.settings, trainer.model, x, route="test_on_batch", purpose="score")
        return on_batch.test_on_batch(trainer, in_memory(x), in_memory(y),
                                      sample_weight=in_memory(sw))  # fmt: skip

    return _scores(ctx, row, body, run)


@retried
def predict_on_batch(
    ctx: AppContext, *, scope: Scope, model_id: uuid.UUID, body: PredictOnBatchRequest
) -> Outputs:
    row = get_model(ctx, scope=scope, model_id=model_id)
    x, _, _ = resolved(ctx, row, body)  # read into memory once the cost is known

    def run(model: Model, policy: str) -> np.ndarray | list[np.ndarray]:
        check_sync_cost(ctx.settings, model, x, route="predict_on_batch", purpose="predict")
        return on_batch.predict_on_batch(model, in_memory(x), dtype_policy=policy)

    return outputs_json(_outputs(ctx, row, body, run))


def outputs_json(outputs: dict[str, np.ndarray]) -> Outputs:
    """Predictions as Keras returns them, in JSON: one output's as nested lists, several keyed
    by output name; non-finite values as null."""
    if len(outputs) == 1:
        return _lists(next(iter(outputs.values())))
    return {name: _lists(out) for name, out in outputs.items()}


def _lists(out: np.ndarray) -> list[Any]:
    values = out.tolist()
    if out.dtype.kind in "iub" or bool(np.isfinite(out).all()):
        return list(values)  # nothing to replace: no walk over every number
    return list(safe_nested(values))
