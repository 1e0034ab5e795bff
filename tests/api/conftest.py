from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The app on the embedded default (SQLite, local artifacts, in-process executor)."""
    settings = Settings(data_dir=tmp_path, database_url=None, redis_url=None,
                        job_heartbeat_s=0.2, max_request_bytes=2_000_000)  # fmt: skip
    with TestClient(create_app(settings)) as c:
        yield c
