"""Model weights and `.keras` files in and out, and weights changed by adapting Normalization
layers. Weights are in the order Keras's `model.get_weights()` returns them: an `.npz` (`arr_0`,
`arr_1`, ...; read by weights_npz) or JSON lists. Uploads are checked whole (member names,
sizes, dtypes, shapes, finiteness in float32) before anything changes."""

from __future__ import annotations

import io
import logging
import os
import uuid
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.auth.quotas import require_room
from app.core.errors import Conflict, InvalidInput
from app.datasets.refs import Resolver
from app.db.models import ModelRow
from app.db.scope import Scope
from app.db.session import unit_of_work
from app.engine.config.errors import EngineError
from app.engine.models.model import Model
from app.engine.training.adapt import adapt_model
from app.engine.training.compile import CompileSpec
from app.engine.training.inference import resolve_device
from app.models import keras_files
from app.models import repository as repo
from app.models.cost import check_sync_cost
from app.models.loading import build_model, load_checkpoint, weights_checkpoint
from app.models.schemas import AdaptRequest
from app.models.service import get_model, model_with_weights
from app.models.weights_files import (
    discard,
    load_or_changed,
    model_lock,
    model_prefix,
    replaced_file,
    retried,
)
from app.models.weights_npz import MAX_ARRAYS
from app.runtime.context import AppContext
from app.runtime.jsonsafe import check_storable

log = logging.getLogger(__name__)
BODY = "body"


def model_weights_key(model_id: uuid.UUID, kind: str = "weights") -> str:
    """A new file for the model's weights; `kind` says what wrote it (`weights`: an upload, an
    adapt or an import; `on-batch`: train_on_batch)."""
    return f"{model_prefix(model_id)}/{kind}-{uuid.uuid4().hex}.safetensors"


def encode_npz(arrays: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    return buffer.getvalue()


def decode_json(body: Any) -> list[np.ndarray]:
    if not isinstance(body, dict) or not isinstance(body.get("weights"), list):
        raise InvalidInput('JSON bodies are {"weights": [array, ...]}', loc=[BODY, "weights"])
    if len(body["weights"]) > MAX_ARRAYS:
        raise InvalidInput(f"the limit is {MAX_ARRAYS} arrays", loc=[BODY, "weights"])
    arrays = []
    for i, value in enumerate(body["weights"]):
        try:
            arrays.append(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInput("must be a number or nested lists of numbers",
                               loc=[BODY, "weights", i]) from exc  # fmt: skip
    return arrays


@retried
def get_weights(ctx: AppContext, *, scope: Scope, model_id: uuid.UUID) -> bytes:
    model = model_with_weights(ctx, get_model(ctx, scope=scope, model_id=model_id))
    return encode_npz(model.get_weights())


def put_weights(
    ctx: AppContext, *, scope: Scope, model_id: uuid.UUID, arrays: list[np.ndarray]
) -> ModelRow:
    row = get_model(ctx, scope=scope, model_id=model_id)
    for i, arr in enumerate(arrays):
        if arr.dtype.kind not in "fiub":
            raise InvalidInput(f"must be numeric, got dtype {arr.dtype}", loc=[BODY, "weights", i])
        if arr.dtype.kind == "f" and not _finite_in_float32(arr):
            raise InvalidInput("numbers must be finite and within float32's range (the weights' "
                               "type); NaN, an infinity or a larger magnitude found",
                               loc=[BODY, "weights", i])  # fmt: skip
    model = build_model(ctx.settings, row.config, row.seed)
    try:
        model.set_weights(arrays, loc=(BODY, "weights"))
    except EngineError as exc:
        raise InvalidInput(exc.message, loc=list(exc.loc)) from exc
    return _store_weights(ctx, row=row, model=model)


def _finite_in_float32(arr: np.ndarray) -> bool:
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(arr.astype(np.float32, copy=False)).all())


@retried
def adapt_weights(
    ctx: AppContext, *, scope: Scope, model_id: uuid.UUID, body: AdaptRequest
) -> tuple[list[str], ModelRow]:
    """Keras's Normalization.adapt on the model's current weights; the adapted weights become
    the model's weights, as an upload's do. Nothing changes on an error."""
    row = get_model(ctx, scope=scope, model_id=model_id)
    with unit_of_work(ctx.sessions) as session:  # refused before the forward passes run
        check_not_training(session, model_id)
    model = load_or_changed(ctx.store, build_model(ctx.settings, row.config, row.seed),
                            row.weights_key, model_id=row.id)  # fmt: skip
    model.to(resolve_device(ctx.settings.device))
    try:
        x = Resolver(ctx, scope=Scope.of_project(row.project_id)).resolve(body.x, [BODY, "x"])
        check_sync_cost(ctx.settings, model, x, route="adapt", purpose="check")
        names = adapt_model(model, x, layers=body.layers, batch_size=body.batch_size)
    except EngineError as exc:
        raise InvalidInput(exc.message, loc=[BODY, *exc.loc]) from exc
    return names, _store_weights(ctx, row=row, model=model, from_current=True)


def check_not_training(session: Session, model_id: uuid.UUID) -> None:
    active = repo.active_job_of_model(session, model_id=model_id)
    if active is not None:
        raise Conflict(f"model {model_id} is training (job {active.id}); its weights "
                       "change when the job ends", loc=["path", "model_id"])  # fmt: skip


def _store_weights(
    ctx: AppContext, *, row: ModelRow, model: Model, from_current: bool = False
) -> ModelRow:
    """Write `model`'s weights and make them the model's (weights source `uploaded`); 409 while
    a job trains it. With `from_current` the new weights were computed from the weights `row`
    held, and are refused if the model's weights changed meanwhile.

    As Keras's set_weights assigns the model's variables only, the optimizer state the model's
    weights file holds (see train_on_batch) is carried into the new file. The file is written
    under the row's lock, so the state carried is the one the row points at. The file it
    replaces is deleted once the change has committed (see weights_files)."""
    key = model_weights_key(row.id)
    project = Scope.of_project(row.project_id)
    try:
        with model_lock(row.id), unit_of_work(ctx.sessions) as session:
            current = repo.get_model_for_update(session, model_id=row.id, scope=project)
            if current is None:
                raise InvalidInput(f"model {row.id} was deleted", loc=["path", "model_id"])
            check_not_training(session, row.id)
            if from_current and current.weights_key != row.weights_key:
                raise Conflict(f"the weights of model {row.id} changed meanwhile; try again",
                               loc=["path", "model_id"])  # fmt: skip
            carried = None
            if current.weights_key is not None:
                carried = load_checkpoint(ctx.store, current.weights_key)
            weights = model.weight_tensors()
            data = weights_checkpoint(weights, row.config, carried=carried).to_bytes()
            require_room(session, settings=ctx.settings, project_id=row.project_id,
                         stored_bytes=len(data) - current.weights_bytes)  # fmt: skip
            ctx.store.write(key, data)
            replaced = replaced_file(session, model_id=row.id, old=current.weights_key, new=key)
            repo.set_uploaded_weights(session, model_id=row.id, key=key, size_bytes=len(data))
    except BaseException:
        ctx.store.delete_prefix(key)
        raise
    discard(ctx, replaced)
    return get_model(ctx, scope=project, model_id=row.id)


# -- .keras files ------------------------------------------------------------------------------
def import_keras(
    ctx: AppContext, *, scope: Scope, data: bytes, name: str | None, seed: int | None
) -> ModelRow:
    """A model from a `.keras` file: its config, its weights, and its compile spec when we can
    honour it (otherwise the first fit must give one)."""
    check_storable(name, ["query", "name"])
    config, h5 = keras_files.read_archive(data, max_bytes=4 * ctx.settings.max_request_bytes)
    check_storable(config, [BODY, keras_files.CONFIG])
    seed = seed if seed is not None else int.from_bytes(os.urandom(4), "little")
    try:
        model = build_model(ctx.settings, config, seed)
        model.set_weights(keras_files.read_weights(model, h5), loc=(keras_files.WEIGHTS,))
    except EngineError as exc:
        raise InvalidInput(exc.message, loc=[BODY, keras_files.CONFIG, *exc.loc]) from exc
    compile_config = None
    if isinstance(config.get("compile_config"), dict) and config["compile_config"]:
        try:
            compile_config = CompileSpec.parse(config["compile_config"]).to_config()
        except EngineError:
            log.info("the .keras file's compile_config is not supported; ignoring it")
    row = ModelRow(id=uuid.uuid4(), name=name or model.name, config=config, seed=seed,
                   summary=model.summary(), compile_config=compile_config,
                   project_id=scope.home)  # fmt: skip
    row.weights_key = model_weights_key(row.id)
    weights_file = weights_checkpoint(model.weight_tensors(), config).to_bytes()
    row.weights_bytes = len(weights_file)
    try:
        with unit_of_work(ctx.sessions) as session:
            require_room(session, settings=ctx.settings, project_id=scope.home, models=1,
                         stored_bytes=len(weights_file))  # fmt: skip
            ctx.store.write(row.weights_key, weights_file)
            repo.add_model(session, row=row)
    except BaseException:
        ctx.store.delete_prefix(model_prefix(row.id))
        raise
    return row


@retried
def export_keras(ctx: AppContext, *, scope: Scope, model_id: uuid.UUID) -> bytes:
    row = get_model(ctx, scope=scope, model_id=model_id)
    return keras_files.write_archive(model_with_weights(ctx, row), row.compile_config)
