"""Engine and session factory. Sessions are units of work: the caller commits once."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # As many pooled connections as the threads that may read at once (the request thread
        # pool's 40, the executor, the writers): a connection opened past the pool is closed
        # after use, and opening one costs its pragmas.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=48, max_overflow=16)  # fmt: skip

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets the API read while a worker thread writes epoch rows.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class DataVersion:
    """SQLite's `PRAGMA data_version`, asked on a connection of its own that never writes: the
    number changes once any other connection, of this process or another, has committed to
    the database since it was last asked. So a value read from the database after the number
    was n still holds while the number is n: `kept` gives it back without a read, to any
    thread. Any commit (an audit row, an epoch row) changes the number, so reads come back at
    most at the rate of commits. `reader` is the event loop's own engine for the reads it
    makes. `for_engine` gives None where it does not apply (not SQLite, or a database in
    memory)."""

    SIZE = 4096  # values kept at most; past it, all are dropped
    BUSY_S = 1.0  # how long the PRAGMA waits for a lock (it runs on the event loop too)

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._kept: dict[Hashable, tuple[int, Any]] = {}
        # For the reads the event loop makes: one connection of its own (the loop is one
        # thread, so it never waits for the pool), waiting at most BUSY_S for a lock.
        self.reader = create_engine(
            f"sqlite:///{path}", pool_size=1, max_overflow=0, pool_timeout=self.BUSY_S,
            connect_args={"check_same_thread": False, "timeout": self.BUSY_S},
        )  # fmt: skip

    @classmethod
    def for_engine(cls, engine: Engine) -> DataVersion | None:
        url = engine.url
        database = url.database or ""
        in_memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
        if url.get_backend_name() != "sqlite" or in_memory or database.startswith("file:"):
            return None
        return cls(database)

    def current(self) -> int | None:
        """The number now; None when SQLite cannot tell (busy past BUSY_S, or failing): the
        caller reads the database."""
        with self._lock:
            try:
                if self._conn is None:  # autocommit: each PRAGMA sees the latest commit
                    self._conn = sqlite3.connect(
                        self._path, timeout=self.BUSY_S, isolation_level=None,
                        check_same_thread=False,
                    )  # fmt: skip
                return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                return None

    def kept(self, key: Hashable, version: int) -> tuple[bool, Any]:
        """(True, value) when `value` was kept for `key` at `version` (from `current`, asked
        before the value was read); else (False, None)."""
        with self._lock:
            found = self._kept.get(key)
        return (True, found[1]) if found is not None and found[0] == version else (False, None)

    def keep(self, key: Hashable, version: int, value: Any) -> None:
        with self._lock:
            if len(self._kept) >= self.SIZE:
                self._kept.clear()
            self._kept[key] = (version, value)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self.reader.dispose()


def ping(engine: Engine) -> None:
    """One round trip to the database (the readiness probe's check); raises if it fails."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: Callable[[], Session]) -> Iterator[Session]:
    """A session that commits once on success and rolls back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
