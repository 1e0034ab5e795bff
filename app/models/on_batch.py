"""compile and train_on_batch: the calls that change a model's compile spec and optimizer state
outside a fit.

The model's weights file holds, beside the weights, the optimizer's state (slots, step count,
learning rate, RNG state, loss scale) and the compile spec that state was made under: a fit's
final checkpoint holds them, and so does every file train_on_batch writes. train_on_batch
continues that state when it runs under that same spec, as repeated calls on one compiled Keras
model do (and a call after a fit continues from the fit's end, as in Keras); under another spec
it starts a fresh optimizer, as Keras does after `compile()`. POST /compile always starts a
fresh one, even with an unchanged spec, as recompiling does in Keras; the weights stay.

Both take the model row's lock (and, for SQLite, which has no row locks, a per-process lock):
concurrent calls on one model run one after the other, each from what the one before left, and
a fit cannot be submitted in between. Both are refused (409) while a fit job is queued or
running. The new weights file is written before the row that points at it is committed; the
file it replaces is deleted after (see weights_files).
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.auth.quotas import require_room
from app.core.errors import InvalidInput, NotFound
from app.datasets.refs import Resolver, in_memory
from app.db.models import ModelRow
from app.db.scope import Scope
from app.db.session import unit_of_work
from app.engine.config.errors import EngineError
from app.engine.models.model import Model
from app.engine.training import on_batch as engine_on_batch
from app.engine.training.checkpoint import Checkpoint, CheckpointInfo
from app.engine.training.compile import CompileSpec
from app.engine.training.heads import check_outputs
from app.engine.training.inference import resolve_device
from app.engine.training.trainer import Trainer
from app.models import repository as repo
from app.models.checkpoints import checkpoint_key
from app.models.cost import check_one_sample, check_sync_cost
from app.models.loading import build_model, load_checkpoint, model_limits, weights_checkpoint
from app.models.schemas import CompileRequest, TrainOnBatchRequest
from app.models.service import BODY, compile_spec, get_model, invalid
from app.models.weights import check_not_training, model_weights_key
from app.models.weights_files import discard, model_lock, replaced_file
from app.runtime.context import AppContext
from app.runtime.jsonsafe import check_storable, safe_logs

ON_BATCH = "on-batch"


def _kind(key: str | None) -> str:
    """What wrote a model's weights file, to keep it in a rewritten copy."""
    return ON_BATCH if key is not None and f"/{ON_BATCH}-" in key else "weights"


def compile_model(
    ctx: AppContext, *, scope: Scope, model_id: uuid.UUID, body: CompileRequest
) -> ModelRow:
    """Keras's compile(): check the spec against the model's outputs and store it; the next
    train_on_batch starts a fresh optimizer."""
    row = get_model(ctx, scope=scope, model_id=model_id)
    config = body.model_dump(exclude_unset=True)
    check_storable(config, [BODY])
    try:
        spec = CompileSpec.parse(config, ())
        model = Model.dry_run(row.config, limits=model_limits(ctx.settings))
        check_outputs(spec, model.output_names, model.output_shapes, ())
    except EngineError as exc:
        raise invalid(exc, BODY) from exc
    check_one_sample(ctx.settings, model, loc=["path", "model_id"])
    written: str | None = None
    with model_lock(model_id):
        try:
            with unit_of_work(ctx.sessions) as session:
                current = _locked(session, model_id, scope)
                key = current.weights_key
                size = current.weights_bytes
                if key is not None:
                    stored = load_checkpoint(ctx.store, key)
                    if stored.state.optimizer_meta is not None:  # the same weights, no optimizer
                        written = model_weights_key(model_id, _kind(key))
                        data = weights_checkpoint(stored.state.weights, current.config).to_bytes()
                        ctx.store.write(written, data)
                        size = len(data)
                replaced = replaced_file(session, model_id=model_id, old=key, new=written or key)
                repo.set_compile_config(
                    session,
                    model_id=model_id,
                    compile_config=spec.to_config(),
                    key=written or key,
                    size_bytes=size,
                )
        except BaseException:
            if written is not None:
                ctx.store.delete_prefix(written)
            raise
        discard(ctx, replaced)
        if written is not None:  # the same weights under their new file
            cached = ctx.cache.get((model_id, key))
            if cached is not None:
                ctx.cache.put((model_id, written), cached)
    return get_model(ctx, scope=scope, model_id=model_id)


def _locked(session: Session, model_id: uuid.UUID, scope: Scope) -> ModelRow:
    """The model row, locked; 404 if it is gone, 409 while a fit job is active."""
    current = repo.get_model_for_update(session, model_id=model_id, scope=scope)
    if current is None:
        raise NotFound(f"model {model_id} does not exist", loc=["path", "model_id"])
    check_not_training(session, model_id)
    return current


def train_on_batch(
    ctx: AppContext, *, scope: Scope, model_id: uuid.UUID, body: TrainOnBatchRequest
) -> dict[str, float | None]:
    """Keras's train_on_batch(..., return_dict=True): one optimizer step on the model's current
    weights, or on a checkpoint's (`checkpoint`); the result becomes the model's weights, with
    the optimizer state, and the spec it ran under becomes the model's compile spec (as a
    fit's does)."""
    row = get_model(ctx, scope=scope, model_id=model_id)
    check_storable(body.compile, [BODY, "compile"])
    start = checkpoint_key(ctx, row, body)  # checkpoints never change: resolved before the lock
    refs = Resolver(ctx, scope=Scope.of_project(row.project_id))
    x, y, sw = (refs.resolve(getattr(body, k), [BODY, k]) for k in ("x", "y", "sample_weight"))
    # Estimated on the model's graph (a dry run) before the data is read into memory.
    model = Model.dry_run(row.config, limits=model_limits(ctx.settings))
    check_sync_cost(ctx.settings, model, x, route="train_on_batch", purpose="train")
    x, y, sw = in_memory(x), in_memory(y), in_memory(sw)
    device = resolve_device(ctx.settings.device)
    key = model_weights_key(model_id, ON_BATCH)
    with model_lock(model_id):
        try:
            with unit_of_work(ctx.sessions) as session:
                current = _locked(session, model_id, scope)
                spec = compile_spec(current, body.compile)
                source = start if start is not None else current.weights_key
                try:  # the compile options are checked as the trainer is built (jit_compile)
                    trainer = Trainer(
                        build_model(ctx.settings, current.config, current.seed), spec, device=device
                    )
                    if source is not None:
                        fresh = body.compile is not None
                        _load(trainer, spec, load_checkpoint(ctx.store, source), fresh=fresh)
                    logs = engine_on_batch.train_on_batch(
                        trainer,
                        x,
                        y,
                        sample_weight=sw,
                        class_weight=body.class_weight,
                    )
                except EngineError as exc:
                    raise invalid(exc, BODY) from exc
                stored = spec.to_config()
                info = CheckpointInfo(model_config=current.config, compile_config=stored)
                data = Checkpoint(trainer.loop_state(), info).to_bytes()
                require_room(
                    session,
                    settings=ctx.settings,
                    project_id=current.project_id,
                    stored_bytes=len(data) - current.weights_bytes,
                )
                ctx.store.write(key, data)
                replaced = replaced_file(
                    session, model_id=model_id, old=current.weights_key, new=key
                )
                repo.set_on_batch_weights(
                    session, model_id=model_id, key=key, compile_config=stored, size_bytes=len(data)
                )
        except BaseException:
            ctx.store.delete_prefix(key)
            raise
        discard(ctx, replaced)
        for p in trainer.model.parameters():
            p.grad = None
        ctx.cache.put((model_id, key), trainer.model)  # no longer trained: safe to share
    return safe_logs(logs)


def _load(trainer: Trainer, spec: CompileSpec, stored: Checkpoint, *, fresh: bool) -> None:
    """The weights, and the optimizer state when it was made under `spec`; with `fresh` (the
    request gave a compile spec, as compile() before train_on_batch) the weights only."""
    if (
        not fresh
        and stored.state.optimizer_meta is not None
        and stored.info.compile_config == spec.to_config()
    ):
        try:
            trainer.carry_over(stored.state, rng=True)
            return
        except (KeyError, ValueError) as exc:  # an optimizer state this engine cannot read
            raise InvalidInput(
                f"the stored optimizer state cannot be continued ({exc}); "
                "compile the model again to start a fresh one",
                loc=[BODY, "compile"],
            ) from exc
    trainer.model.load_weight_tensors(stored.state.weights)
