"""Fit checkpoints as models see them: addressed among a job's checkpoints by a selector (an id,
`epoch:N`, `latest` or `best`), taken as the weights that evaluate, predict and the *_on_batch
calls run on (a checkpoint of the model's most recent job by default), and exported as a Keras
`.keras` file or as safetensors; the model's current weights as safetensors too. The jobs domain
writes, lists and prunes them (app.jobs).

`best` is the checkpoint whose logs hold the best value of the monitor: the monitor and mode of
the job's (first) ModelCheckpoint callback, which its checkpoints record, else `val_loss` (min)
when some checkpoint logged it, else `loss` (min). Ties go to the earliest, as ModelCheckpoint
saves only on a strict improvement.

The safetensors export holds the weights under `<layer>/<weight>` names, with their Keras
`get_weights()` order and the model config in its metadata; it carries no optimizer state (the
job's own checkpoints do).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence

import torch
from safetensors.torch import save

from app.core.errors import InvalidInput, NotFound
from app.db.models import CheckpointRow, JobRow, ModelRow
from app.db.scope import Scope
from app.db.session import unit_of_work
from app.engine.models.model import Model
from app.models import keras_files
from app.models import repository as repo
from app.models.best import best, selection
from app.models.loading import build_model, load_weights
from app.models.schemas import AtCheckpoint
from app.models.service import BODY, get_model, model_with_weights
from app.models.weights_files import WeightsChanged, retried
from app.runtime.context import AppContext

_EPOCH = re.compile(r"epoch:(\d{1,9})")
SELECTOR_DOC = (
    "A checkpoint id, `epoch:N` (0-based, the last written for that epoch), `latest` or `best`"
    " (by the job's ModelCheckpoint monitor and mode, else val_loss, else loss)"
)


def _job_checkpoints(
    ctx: AppContext, scope: Scope, job_id: uuid.UUID
) -> tuple[JobRow, Sequence[CheckpointRow]]:
    with unit_of_work(ctx.sessions) as session:
        job = repo.get_job(session, job_id=job_id, scope=scope)
        if job is None:
            raise NotFound(f"job {job_id} does not exist", loc=["path", "job_id"])
        return job, repo.checkpoints_of_job(session, job_id=job_id)


def resolve(
    ctx: AppContext,
    *,
    scope: Scope,
    job_id: uuid.UUID,
    selector: str,
    loc: Sequence[str | int] = ("path", "checkpoint"),
) -> tuple[JobRow, CheckpointRow]:
    """The checkpoint `selector` names among the job's; errors name `loc`."""
    job, rows = _job_checkpoints(ctx, scope, job_id)
    ordered = sorted(rows, key=lambda r: (r.epoch, r.created_at))
    found: CheckpointRow | None
    if selector == "latest":
        found = ordered[-1] if ordered else None
    elif selector == "best":
        found = best(ordered)
        if found is None:
            monitor, mode = selection(ordered)
            raise NotFound(f"job {job_id} has no checkpoint whose logs hold {monitor!r}, which "
                           f"selects `best` ({mode})", loc=loc)  # fmt: skip
    elif (match := _EPOCH.fullmatch(selector)) is not None:
        epoch = int(match.group(1))
        found = next((r for r in reversed(ordered) if r.epoch == epoch), None)
    else:
        try:
            wanted = uuid.UUID(selector)
        except ValueError:
            raise InvalidInput(
                f"{selector!r} is not a checkpoint selector; expected {SELECTOR_DOC}", loc=loc
            ) from None
        found = next((r for r in ordered if r.id == wanted), None)
    if found is None:
        raise NotFound(f"job {job_id} has no checkpoint {selector!r}", loc=loc)
    return job, found


def checkpoint_key(ctx: AppContext, row: ModelRow, body: AtCheckpoint) -> str | None:
    """The weights file of the checkpoint a request selects; None when it selects none."""
    if body.checkpoint is None:
        if body.job_id is not None:
            raise InvalidInput("names a job but no checkpoint: give `checkpoint` too (an id, "
                               "epoch:N, latest or best)", loc=[BODY, "job_id"])  # fmt: skip
        return None
    job_id = body.job_id
    # Only a job of the model itself, so of the model's project.
    scope = Scope.of_project(row.project_id)
    with unit_of_work(ctx.sessions) as session:
        if job_id is None:
            latest = repo.latest_job_of_model(session, model_id=row.id)
            if latest is None:
                raise NotFound(f"model {row.id} has no fit job to take a checkpoint from",
                               loc=[BODY, "checkpoint"])  # fmt: skip
            job_id = latest.id
        else:
            job = repo.get_job(session, job_id=job_id, scope=scope)
            if job is None:
                raise NotFound(f"job {job_id} does not exist", loc=[BODY, "job_id"])
            if job.model_id != row.id:
                raise InvalidInput(f"job {job_id} is a job of model {job.model_id}, not of "
                                   f"model {row.id}", loc=[BODY, "job_id"])  # fmt: skip
    _, found = resolve(ctx, scope=scope, job_id=job_id, selector=body.checkpoint,
                       loc=[BODY, "checkpoint"])  # fmt: skip
    return found.key


def _checkpoint_model(ctx: AppContext, job: JobRow, ckpt: CheckpointRow) -> Model:
    row = get_model(ctx, scope=Scope.of_project(job.project_id), model_id=job.model_id)
    model = build_model(ctx.settings, row.config, row.seed)
    try:
        return load_weights(ctx.store, model, ckpt.key)
    except FileNotFoundError as exc:  # deleted with its model since it was looked up: retried
        raise WeightsChanged(f"the file of checkpoint {ckpt.id} is no longer stored",
                             loc=["path", "checkpoint"]) from exc  # fmt: skip


@retried
def export_keras(ctx: AppContext, *, scope: Scope, job_id: uuid.UUID, selector: str) -> bytes:
    job, ckpt = resolve(ctx, scope=scope, job_id=job_id, selector=selector)
    compile_config = (job.request or {}).get("compile")
    return keras_files.write_archive(_checkpoint_model(ctx, job, ckpt), compile_config)


@retried
def export_safetensors(ctx: AppContext, *, scope: Scope, job_id: uuid.UUID, selector: str) -> bytes:
    job, ckpt = resolve(ctx, scope=scope, job_id=job_id, selector=selector)
    meta = {"job_id": str(job.id), "checkpoint_id": str(ckpt.id), "epoch": str(ckpt.epoch),
            "attempt": str(ckpt.attempt)}  # fmt: skip
    return weights_safetensors(_checkpoint_model(ctx, job, ckpt), meta)


@retried
def model_safetensors(ctx: AppContext, *, scope: Scope, model_id: uuid.UUID) -> bytes:
    row = get_model(ctx, scope=scope, model_id=model_id)
    return weights_safetensors(model_with_weights(ctx, row), {"model_id": str(row.id)})


def weights_safetensors(model: Model, meta: dict[str, str]) -> bytes:
    tensors = {k: t.detach().to("cpu", torch.float32).contiguous().clone()
               for k, t in model.weight_tensors().items()}  # fmt: skip
    return save(tensors, metadata={
        **meta,
        "keras_order": json.dumps(list(tensors)),
        "model_config": json.dumps(model.get_config()),
    })  # fmt: skip
