"""Real servers for the client's tests: uvicorn on the embedded default (SQLite, in-process
jobs), or uvicorn with a Celery worker on Postgres and Redis; each yields its base URL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.harness import start_api_and_workers, start_embedded_api


@contextmanager
def embedded_server(tmp: Path) -> Iterator[str]:
    env = {"DATA_DIR": str(tmp / "data")}
    api, base = start_embedded_api(env, tmp)
    try:
        yield base
    finally:
        api.stop()


@contextmanager
def distributed_server(tmp: Path, database_url: str, redis_url: str) -> Iterator[str]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_QUEUE": f"fitapi-client-test-{uuid.uuid4().hex[:8]}",
        "DATA_DIR": str(tmp / "data"),
        "JOB_HEARTBEAT_S": "0.2",
        "JOB_LEASE_S": "2",
        "REAPER_INTERVAL_S": "0.5",
        # evaluate and predict of the 500-row scenario run as jobs here (synchronously on the
        # embedded server): the client follows both.
        "PREDICT_SYNC_MAX_ROWS": "100",
    }
    api, base, (worker,) = start_api_and_workers(env, tmp, [("worker", {})])
    try:
        yield base
    finally:
        worker.stop()
        api.stop()
