"""Use cases of the models domain: create, list, read and delete a model; the model of a row
with the weights of a file (from the cache); the compile spec a call runs under. Each opens one
unit of work that commits once. Engine errors become 422s that name the field, and every check
runs before anything is written."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from app.auth.quotas import require_room
from app.core.errors import Conflict, InvalidInput, NotFound
from app.db.models import ModelRow
from app.db.scope import Scope
from app.db.session import unit_of_work
from app.engine.config.errors import EngineError
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.inference import resolve_device
from app.models import repository as repo
from app.models.loading import build_model, model_limits
from app.models.schemas import ModelCreate
from app.models.weights_files import load_or_changed, model_prefix
from app.runtime.context import AppContext
from app.runtime.jsonsafe import check_storable
from app.runtime.storage import job_prefix

BODY = "body"


def invalid(exc: EngineError, *prefix: str | int) -> InvalidInput:
    return InvalidInput(exc.message, loc=[*prefix, *exc.loc])


def create_model(ctx: AppContext, *, scope: Scope, body: ModelCreate) -> ModelRow:
    seed = body.seed if body.seed is not None else int.from_bytes(os.urandom(4), "little")
    check_storable(body.config, [BODY, "config"])
    check_storable(body.name, [BODY, "name"])
    try:  # a dry run: shapes, counts and limits, no weights allocated
        model = Model.dry_run(body.config, limits=model_limits(ctx.settings))
    except EngineError as exc:
        raise invalid(exc, BODY, "config") from exc
    row = ModelRow(
        name=body.name or model.name,
        config=body.config,
        seed=seed,
        summary=model.summary(),
        project_id=scope.home,
    )
    with unit_of_work(ctx.sessions) as session:
        require_room(session, settings=ctx.settings, project_id=scope.home, models=1)
        repo.add_model(session, row=row)
    return row


def list_models(
    ctx: AppContext, *, scope: Scope, limit: int, offset: int
) -> tuple[Sequence[ModelRow], int]:
    with unit_of_work(ctx.sessions) as session:
        return repo.list_models(session, scope=scope, limit=limit, offset=offset)


def get_model(ctx: AppContext, *, scope: Scope, model_id: uuid.UUID) -> ModelRow:
    """The model, if `scope` sees it; another project's model does not exist (404)."""
    with unit_of_work(ctx.sessions) as session:
        row = repo.get_model(session, model_id=model_id, scope=scope)
    if row is None:
        raise NotFound(f"model {model_id} does not exist", loc=["path", "model_id"])
    return row


_shared = threading.local()
_cached_only: ContextVar[bool] = ContextVar("cached_only", default=False)


class NotCached(Exception):
    """Raised within `cached_only` where a model would be built or its state read."""


@contextmanager
def cached_only() -> Iterator[None]:
    """Within it, `current_model`, `model_graph` and `model_at` answer from what is cached (the
    model's state at SQLite's current data version, read on the loop's own connection if need
    be; its graph; the built model), else raise NotCached: a predict run on the event loop must
    not read a weights file, build a model or wait for the database's pool."""
    token = _cached_only.set(True)
    try:
        yield
    finally:
        _cached_only.reset(token)


def only_cached() -> bool:
    """Whether the caller runs within `cached_only`."""
    return _cached_only.get()


@contextmanager
def shared_state_reads() -> Iterator[None]:
    """Within it, on this thread, `current_model` reads each model's state once: the calls
    made for requests that had all arrived before it began (the predict lane's pass) share one
    read per model, which sees every change committed before any of them arrived."""
    _shared.states = {}
    try:
        yield
    finally:
        del _shared.states


def current_model(ctx: AppContext, *, scope: Scope, model_id: uuid.UUID) -> ModelRow:
    """`get_model` by one indexed read of the columns that change (MODEL_STATE): a row read
    before (`ctx.cache.row`) is the answer while they all still match; otherwise the whole row
    is read and kept. The row is shared: read it, never change it."""
    states: dict[uuid.UUID, Any] | None = getattr(_shared, "states", None)
    if states is not None and model_id in states:
        state = states[model_id]
    else:
        state = _model_state(ctx, model_id)
        if states is not None:
            states[model_id] = state
    if state is None or not scope.sees(state.project_id):
        raise NotFound(f"model {model_id} does not exist", loc=["path", "model_id"])
    row = ctx.cache.row(model_id)
    if row is None or _state_of(row) != tuple(state):
        if _cached_only.get():
            raise NotCached(f"model {model_id} changed since its row was read")
        row = get_model(ctx, scope=scope, model_id=model_id)
        ctx.cache.put_row(model_id, row)
    return row


def _model_state(ctx: AppContext, model_id: uuid.UUID) -> Any:
    """MODEL_STATE's row for the model; on SQLite, the one this thread read last while nothing
    has been committed to the database since (DataVersion), without reading it again."""
    versions = ctx.data_version
    if versions is None:
        with ctx.engine.connect() as conn:
            return repo.model_state(conn, model_id=model_id)
    version = versions.current()  # before the read: a commit after it changes the number
    found, state = versions.kept(model_id, version) if version is not None else (False, None)
    if found:
        return state
    if _cached_only.get():
        if version is None:
            raise NotCached("SQLite's data version is unknown")
        try:  # on the event loop: its own connection, which never waits for the pool
            with versions.reader.connect() as conn:
                state = repo.model_state(conn, model_id=model_id)
        except Exception as exc:  # busy past BUSY_S, or failing: the lane reads it
            raise NotCached(f"the state of model {model_id} could not be read here") from exc
    else:
        with ctx.engine.connect() as conn:
            state = repo.model_state(conn, model_id=model_id)
    if version is not None:
        versions.keep(model_id, version, state)
    return state


def _state_of(row: ModelRow) -> tuple[Any, ...]:
    return (row.project_id, row.weights_key, row.weights_checkpoint_id, row.compile_config,
            row.updated_at)  # fmt: skip


def delete_model(ctx: AppContext, *, scope: Scope, model_id: uuid.UUID) -> None:
    with unit_of_work(ctx.sessions) as session:
        # Locked like submit_fit locks it: a fit and a delete of one model do not interleave.
        if repo.get_model_for_update(session, model_id=model_id, scope=scope) is None:
            raise NotFound(f"model {model_id} does not exist", loc=["path", "model_id"])
        active = repo.active_job_of_model(session, model_id=model_id)
        if active is not None:
            raise Conflict(
                f"model {model_id} has a {active.status} job {active.id}; cancel it first",
                loc=["path", "model_id"],
            )
        job_ids = repo.job_ids_of_model(session, model_id=model_id)
        repo.delete_model(session, model_id=model_id)
    # Files go only after the rows are gone: a crash here leaves orphan files, never rows
    # pointing at missing files.
    for job_id in job_ids:
        ctx.store.delete_prefix(job_prefix(job_id))
    ctx.store.delete_prefix(model_prefix(model_id))
    ctx.cache.drop_model(model_id)


def model_with_weights(ctx: AppContext, row: ModelRow) -> Model:
    return model_at(ctx, row, row.weights_key)


def model_at(ctx: AppContext, row: ModelRow, key: str | None) -> Model:
    """The model of `row` with the weights of file `key` (None: its seeded weights), from the
    cache when it is there. Cached models are shared: read them, never train them. Raises
    WeightsChanged when the file was replaced since `row` was read (see weights_files)."""
    model = ctx.cache.get((row.id, key))
    if model is None:
        if _cached_only.get():
            raise NotCached(f"model {row.id} is not built with weights {key}")
        model = build_model(ctx.settings, row.config, row.seed)
        model = load_or_changed(ctx.store, model, key, model_id=row.id)
        model.to(resolve_device(ctx.settings.device))
        ctx.cache.put((row.id, key), model)
    return model


def model_graph(ctx: AppContext, row: ModelRow) -> Model:
    """The graph of `row` as a dry run builds it (shapes and counts, no weights), what cost
    estimates read: built once per model (its config never changes) and cached. A config the
    limits now refuse is a 422 naming the field, as at creation."""
    graph = ctx.cache.graph(row.id)
    if graph is None:
        if _cached_only.get():
            raise NotCached(f"model {row.id}'s graph is not built")
        try:
            graph = Model.dry_run(row.config, limits=model_limits(ctx.settings))
        except EngineError as exc:
            raise invalid(exc, BODY) from exc
        ctx.cache.put_graph(row.id, graph)
    return graph


def compile_spec(row: ModelRow, given: dict[str, Any] | None) -> CompileSpec:
    config = given if given is not None else row.compile_config
    if config is None:
        raise InvalidInput(
            "the model has not been compiled: give a compile spec (optimizer, loss, metrics)",
            loc=[BODY, "compile"],
        )
    try:
        return CompileSpec.parse(config, ("compile",))
    except EngineError as exc:
        raise invalid(exc, BODY) from exc
