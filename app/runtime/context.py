"""What every domain needs at run time, built once per process from the settings: the
database, the artifact store, the model cache, the dispatcher and the progress bus."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.db.models import ModelRow
from app.db.session import DataVersion, make_engine, make_session_factory
from app.runtime.progress import LocalBus, ProgressBus, make_bus
from app.runtime.storage import ArtifactStore

if TYPE_CHECKING:  # torch is imported by what builds models, not by every command
    from app.engine.models.model import Model


class Dispatcher(Protocol):
    """Rings the doorbell for a committed job: a Celery message, or an in-process executor."""

    def dispatch(self, job_id: uuid.UUID) -> None: ...

    def close(self) -> None: ...


K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """At most `size` entries, the least recently used dropped first (not thread-safe: its
    owner locks)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


class ModelCache:
    """Built models with their weights loaded, keyed by (model id, weights key): evaluate and
    predict on the same weights skip the rebuild and the checkpoint read. A weights key names
    one file, written once, so an entry never goes stale: new weights are a new key. Beside
    them, each model's graph from a dry run (shapes and counts, no weights), which cost
    estimates read (a model's config never changes, so neither does its graph), and its row as
    last read whole, which a predict reuses while the columns that change still match. Graphs
    and rows hold no weights: a few times more of them are kept than of built models."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._models: _Lru[tuple[uuid.UUID, str | None], Model] = _Lru(size)
        self._graphs: _Lru[uuid.UUID, Model] = _Lru(4 * size)
        self._rows: _Lru[uuid.UUID, ModelRow] = _Lru(4 * size)
        self._lock = threading.Lock()

    def get(self, key: tuple[uuid.UUID, str | None]) -> Model | None:
        with self._lock:
            return self._models.get(key)

    def put(self, key: tuple[uuid.UUID, str | None], model: Model) -> None:
        with self._lock:
            self._models.put(key, model)

    def graph(self, model_id: uuid.UUID) -> Model | None:
        with self._lock:
            return self._graphs.get(model_id)

    def put_graph(self, model_id: uuid.UUID, graph: Model) -> None:
        with self._lock:
            self._graphs.put(model_id, graph)

    def row(self, model_id: uuid.UUID) -> ModelRow | None:
        """The model's row as last read whole (see app.models.service.current_model)."""
        with self._lock:
            return self._rows.get(model_id)

    def put_row(self, model_id: uuid.UUID, row: ModelRow) -> None:
        with self._lock:
            self._rows.put(model_id, row)

    def drop_model(self, model_id: uuid.UUID) -> None:
        with self._lock:
            for key in [k for k in self._models.items if k[0] == model_id]:
                del self._models.items[key]
            self._graphs.items.pop(model_id, None)
            self._rows.items.pop(model_id, None)


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ArtifactStore
    cache: ModelCache
    dispatcher: Dispatcher | None = None
    # SQLite's data version (app.db.session.DataVersion); None on PostgreSQL.
    data_version: DataVersion | None = None
    stopping: threading.Event = field(default_factory=threading.Event)
    progress: ProgressBus = field(default_factory=LocalBus)

    def close(self) -> None:
        self.stopping.set()
        if self.dispatcher is not None:
            self.dispatcher.close()
        self.progress.close()
        if self.data_version is not None:
            self.data_version.close()
        self.engine.dispose()


def build_context(settings: Settings) -> AppContext:
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    store = ArtifactStore(settings.resolved_artifact_dir)
    store.root.mkdir(parents=True, exist_ok=True)
    return AppContext(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        store=store,
        cache=ModelCache(settings.model_cache_size),
        data_version=DataVersion.for_engine(engine),
        progress=make_bus(settings.redis_url),
    )
