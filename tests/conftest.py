"""Shared fixtures: a fresh, migrated Postgres database per test session, Redis, and helpers.

Under CI=true a test whose service is missing fails instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TRUNCATE = (
    "TRUNCATE models, jobs, epoch_logs, checkpoints, datasets, job_datasets, api_keys, audit_log, "
    "webhooks, webhook_deliveries "
    "CASCADE; DELETE FROM projects WHERE name <> 'default'; UPDATE projects SET quotas = '{}'"
)

os.environ.setdefault("KERAS_BACKEND", "torch")

PG_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(ok: bool, what: str) -> None:
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{what} is not reachable; CI must have it")
    pytest.skip(f"{what} is not reachable")


def _postgres_up() -> bool:
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[], str]]:
    """Makes new databases migrated with `alembic upgrade head`; drops them after the session."""
    require(_postgres_up(), "PostgreSQL")
    from sqlalchemy import create_engine, text

    from app.db.migrate import upgrade_head

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    names: list[str] = []

    def make() -> str:
        name = f"fitapi_test_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        names.append(name)
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        upgrade_head(url)
        return url

    yield make
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_url(pg_database: Callable[[], str]) -> str:
    return pg_database()


@pytest.fixture(scope="session")
def redis_url() -> str:
    require(_redis_up(), "Redis")
    return REDIS_URL


@pytest.fixture
def pg_ctx(pg_url: str, tmp_path: Path) -> Iterator[object]:
    """A jobs context on the test database with an empty schema and a fresh artifact folder."""
    from sqlalchemy import text

    from app.core.config import Settings
    from app.runtime.context import build_context

    settings = Settings(
        database_url=pg_url, data_dir=tmp_path, job_heartbeat_s=0.2, job_lease_s=5.0,
        checkpoint_every_s=0.0,
    )  # fmt: skip
    ctx = build_context(settings)
    with ctx.engine.begin() as conn:
        conn.execute(text(TRUNCATE))
    yield ctx
    ctx.close()
