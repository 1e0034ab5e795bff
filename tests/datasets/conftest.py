"""The app on the real Postgres and on the embedded SQLite database, for every datasets test;
a module's `SETTINGS` dict overrides settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import serve


@pytest.fixture(params=["postgres", "sqlite"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with serve(tmp_path, url, **getattr(request.module, "SETTINGS", {})) as c:
        yield c
