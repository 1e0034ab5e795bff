"""predict and evaluate, answered at once or run as a job: over at most PREDICT_SYNC_MAX_ROWS
rows whose estimated cost is within SYNC_MAX_COST (app.models.cost) the models domain answers
in the request; otherwise a job (kind `predict` or `evaluate`) is queued, checked as completely
as a fit first (one batch within JOB_MAX_BATCH_COST), so large batch inference is neither bound
to one HTTP request nor able to exhaust the API process's memory. A predict job's outputs
become a new dataset; an evaluate job's logs its `result`."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from app.auth.quotas import require_room
from app.core.errors import Conflict, NotFound
from app.datasets.refs import Resolver
from app.db.models import JobRow, ModelRow
from app.db.scope import Scope
from app.db.session import unit_of_work
from app.engine.arrays.checks import XY
from app.engine.config.errors import EngineError
from app.engine.training.fit_args import DEFAULT_BATCH_SIZE
from app.engine.training.inference import model_inputs, resolve_device
from app.engine.training.trainer import Trainer
from app.jobs import repository as repo
from app.jobs.service import dispatch, inputs_until_committed, link_datasets, store_inputs
from app.jobs.spec import EvaluateJobSpec, InferenceJobSpec, PredictJobSpec
from app.models import repository as models_repo
from app.models.checkpoints import checkpoint_key
from app.models.cost import (
    Purpose,
    check_job_batch,
    check_one_sample,
    request_cost,
    rows_of,
)
from app.models.inference import dtype_policy_of, evaluate, predict_arrays
from app.models.loading import build_model
from app.models.schemas import EvaluateRequest, PredictRequest
from app.models.service import (
    BODY,
    NotCached,
    compile_spec,
    current_model,
    invalid,
    model_graph,
    only_cached,
)
from app.runtime.context import AppContext

T = TypeVar("T")


def predict(
    ctx: AppContext, *, scope: Scope, model_id: uuid.UUID, body: PredictRequest
) -> tuple[dict[str, np.ndarray] | None, JobRow | None]:
    """The predictions keyed by output name, or (over PREDICT_SYNC_MAX_ROWS rows, or past
    SYNC_MAX_COST) the queued predict job."""
    return _at_once_or_job(ctx, scope, model_id, body, "predict", predict_arrays)


def evaluate_or_job(
    ctx: AppContext, *, scope: Scope, model_id: uuid.UUID, body: EvaluateRequest
) -> tuple[dict[str, float | None] | None, JobRow | None]:
    """The loss and metrics, or (over PREDICT_SYNC_MAX_ROWS rows, or past SYNC_MAX_COST) the
    queued evaluate job."""
    return _at_once_or_job(ctx, scope, model_id, body, "evaluate", evaluate)


def runs_inline(ctx: AppContext, *, body: PredictRequest) -> bool:
    """Whether this predict may try to run where the request arrived (the event loop), as a
    bare endpoint runs its model: on SQLite (its state read is local, and mostly skipped, see
    DataVersion), on the model's current weights, with `x` given as rows or arrays (no dataset
    to read). It must then run within `cached_only`, where `predict` raises NotCached (and the
    predict goes to the lane) unless the model is built and cached and the predict is
    estimated at most PREDICT_INLINE_MAX_COST."""
    return (ctx.settings.predict_inline_max_cost > 0 and ctx.data_version is not None
            and not body.checkpoint and not body.job_id and _given_rows(body.x))  # fmt: skip


def _given_rows(x: Any) -> bool:
    """x is arrays or nested lists of numbers (a dataset reference is a string or an object
    naming one)."""
    if isinstance(x, np.ndarray):
        return True
    while isinstance(x, list) and x:
        x = x[0]
    return isinstance(x, int | float) and not isinstance(x, bool)


def predict_now(
    ctx: AppContext, *, scope: Scope, model_id: uuid.UUID, body: PredictRequest
) -> dict[str, np.ndarray] | None:
    """The predictions when `predict` would answer them at once, for a model of one input;
    None, with nothing submitted, when it would queue a job or the model has several inputs
    (the predict lane's merged requests, whose rows are concatenated, run alone then)."""
    row = current_model(ctx, scope=scope, model_id=model_id)
    if len(model_graph(ctx, row).input_names) != 1:
        return None
    outputs, _ = _at_once_or_job(ctx, scope, model_id, body, "predict", predict_arrays,
                                 submit=False)  # fmt: skip
    return outputs


def _at_once_or_job(
    ctx: AppContext,
    scope: Scope,
    model_id: uuid.UUID,
    body: Any,
    kind: str,
    at_once: Callable[..., T],
    submit: bool = True,
) -> tuple[T | None, JobRow | None]:
    row = current_model(ctx, scope=scope, model_id=model_id)
    # The request reads, and the job writes, the model's project's data only.
    project = Scope.of_project(row.project_id)
    refs = Resolver(ctx, scope=project)
    x = refs.resolve(body.x, [BODY, "x"])
    graph = model_graph(ctx, row)  # the estimate reads the model's graph: nothing runs yet
    purpose: Purpose = "predict" if kind == "predict" else "score"
    settings, rows = ctx.settings, rows_of(x)
    cost = request_cost(graph, x, rows=rows, purpose=purpose)
    at_once_ok = rows <= settings.predict_sync_max_rows and cost <= settings.sync_max_cost
    if only_cached() and not (at_once_ok and cost <= settings.predict_inline_max_cost):
        raise NotCached("too large to run on the event loop")  # nor a job from there
    if at_once_ok:
        # The row just read goes along: the answer needs no second read of it.
        return at_once(ctx, scope=project, model_id=model_id, body=body, row=row), None
    if not submit:
        return None, None
    return None, _submit(ctx, row=row, kind=kind, body=body, refs=refs, x=x)


def _submit(
    ctx: AppContext,
    *,
    row: ModelRow,
    kind: str,
    body: PredictRequest | EvaluateRequest,
    refs: Resolver,
    x: Any,
) -> JobRow:
    model_id = row.id
    project = Scope.of_project(row.project_id)
    weights_key = checkpoint_key(ctx, row, body)
    if weights_key is None:
        weights_key = row.weights_key
    model = build_model(ctx.settings, row.config, row.seed)
    n_in, n_out = len(model.input_names), len(model.output_names)
    job_spec: InferenceJobSpec
    try:
        if isinstance(body, EvaluateRequest):
            spec = compile_spec(row, body.compile)
            trainer = Trainer(model, spec, device=resolve_device("cpu"))
            y = refs.resolve(body.y, [BODY, "y"])
            sw = refs.resolve(body.sample_weight, [BODY, "sample_weight"])
            check_one_sample(ctx.settings, model, x, loc=["path", "model_id"])  # prepare's probe
            data = trainer.prepare(x, y, sw)
            job_spec = EvaluateJobSpec(
                inputs=n_in, outputs=n_out, batch_size=body.batch_size, compile=spec.to_config()
            )
        else:
            data = XY(model_inputs(model, x, ()), [None] * n_out, [None] * n_out)
            policy = dtype_policy_of(row)
            job_spec = PredictJobSpec(
                inputs=n_in, outputs=n_out, batch_size=body.batch_size, dtype_policy=policy
            )
    except EngineError as exc:
        raise invalid(exc, BODY) from exc
    # A worker holds one batch at a time: a predict job writes its outputs batch by batch.
    check_job_batch(
        ctx.settings,
        model,
        x,
        batch_size=body.batch_size or DEFAULT_BATCH_SIZE,
        purpose="check" if kind == "predict" else "score",
        loc=[BODY, "batch_size"],
    )
    job_id = uuid.uuid4()
    arrays: dict[str, np.ndarray | None] = dict(data.to_arrays())
    data_key, job_spec.data_refs, inputs_bytes = store_inputs(ctx, job_id, arrays, refs)
    # A predict job's outputs become a dataset of the project: float32, rows x output elements
    # (an open dimension counted once).
    outputs_bytes = 0
    if kind == "predict":
        per_row = sum(math.prod(d or 1 for d in shape[1:]) for shape in model.output_shapes)
        outputs_bytes = 4 * rows_of(x) * per_row
    busy = Conflict(
        f"model {model_id} has a queued or running job; a {kind} over more than "
        f"{ctx.settings.predict_sync_max_rows} rows runs as a job, one at a time "
        "per model",
        loc=["path", "model_id"],
    )
    with inputs_until_committed(ctx, job_id, busy), unit_of_work(ctx.sessions) as session:
        if models_repo.get_model_for_update(session, model_id=model_id, scope=project) is None:
            raise NotFound(f"model {model_id} does not exist", loc=["path", "model_id"])
        if models_repo.active_job_of_model(session, model_id=model_id) is not None:
            raise busy
        require_room(
            session,
            settings=ctx.settings,
            project_id=row.project_id,
            queued_jobs=1,
            stored_bytes=inputs_bytes + outputs_bytes,
        )
        job = repo.add_job(
            session,
            row=JobRow(
                id=job_id,
                model_id=model_id,
                project_id=row.project_id,
                kind=kind,
                request=job_spec.to_request(),
                data_key=data_key,
                inputs_bytes=inputs_bytes,
                base_weights_key=weights_key,
                epochs=0,
                epochs_done=0,
                max_attempts=ctx.settings.job_max_attempts,
            ),
        )
        link_datasets(session, scope=project, job_id=job_id, data_refs=job_spec.data_refs)
    dispatch(ctx, job.id)
    return job
