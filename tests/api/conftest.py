from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.core.config import Settings
from app.main import create_app

TRUNCATE = (
    "TRUNCATE models, jobs, epoch_logs, checkpoints, datasets, job_datasets, api_keys, audit_log, "
    "webhooks, webhook_deliveries, idempotency_keys "
    "CASCADE; DELETE FROM projects WHERE name <> 'default'; UPDATE projects SET quotas = '{}'"
)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The app on the embedded default (SQLite, local artifacts, in-process executor)."""
    settings = Settings(data_dir=tmp_path, database_url=None, redis_url=None,
                        job_heartbeat_s=0.2, max_request_bytes=2_000_000)  # fmt: skip
    with TestClient(create_app(settings)) as c:
        yield c


@contextmanager
def serve(tmp_path: Path, database_url: str | None = None, **settings: Any) -> Iterator[TestClient]:
    """The app on `database_url` (emptied first) or the embedded SQLite file, with the in-process
    executor, a 0.2 s heartbeat, a checkpoint at every epoch end and a 2 MB body limit, unless
    `settings` say otherwise."""
    if database_url is not None:
        engine = create_engine(database_url)
        with engine.begin() as conn:
            conn.execute(text(TRUNCATE))
        engine.dispose()
    options: dict[str, Any] = {"job_heartbeat_s": 0.2, "checkpoint_every_s": 0.0,
                               "max_request_bytes": 2_000_000, **settings}  # fmt: skip
    app = create_app(Settings(data_dir=tmp_path, database_url=database_url, redis_url=None,
                              **options))  # fmt: skip
    with TestClient(app) as c:
        yield c
