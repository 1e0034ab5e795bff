"""Shared fixtures: a fresh, migrated Postgres database per test session, Redis, and helpers.

Under CI=true a test whose service is missing fails instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

TRUNCATE = (
    "TRUNCATE models, jobs, epoch_logs, checkpoints, datasets, job_datasets, api_keys, audit_log, "
    "webhooks, webhook_deliveries, idempotency_keys "
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

    # Side by side: on PostgreSQL 15 each DROP DATABASE waits for a checkpoint, which drops
    # made at once share.
    def drop(name: str) -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    with ThreadPoolExecutor(max_workers=max(1, min(len(names), 8))) as pool:
        list(pool.map(drop, names))
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


# -- markers: differential, fit, slow (see CONTRIBUTING.md) -----------------------------------
# A module is differential when it compares with Keras: it uses the `keras` fixture or these.
_KERAS_NAMES = ("import_keras", "keras_and_ours", "keras_json")
# Differential fits over many steps, whose roundoff depends on the order a CPU's kernels sum in:
# the test command runs them again on the baseline kernels (ATEN_CPU_CAPABILITY=default).
_FIT_MODULES = ("test_callbacks_vs_keras.py", "test_plateau_schedule_vs_keras.py")
# The slowest differential fits (over ~1.4 s each on two cores): `-m "not slow"` leaves them out.
_SLOW = (
    "tests/engine/test_functional_training_arg_vs_keras.py::test_fit_runs_in_training_mode",
    "tests/engine/test_fit_conv_vs_keras.py::test_conv_classifier_fit_matches_keras",
    "tests/engine/test_mask_ops_vs_keras.py::test_each_masked_variant_matches_keras",
    "tests/engine/test_fit_norm_vs_keras.py::test_fit_with_normalization_matches_keras",
    "tests/engine/test_fit_recurrent_vs_keras.py::test_recurrent_fit_matches_keras",
    "tests/engine/test_recurrent.py::test_dropout_in_training_is_seeded_and_reproducible",
    "tests/engine/test_fit_execution.py::test_jit_compile_matches_keras",
    "tests/api/test_fit_outcomes.py::test_a_second_fit_continues_the_optimizer",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        differential = "keras" in getattr(item, "fixturenames", ()) or any(
            hasattr(module, name) for name in _KERAS_NAMES
        )
        if differential:
            item.add_marker(pytest.mark.differential)
            name = Path(item.path).name
            fit_name = "fit" in getattr(item, "originalname", "")
            if name.startswith("test_fit_") or name in _FIT_MODULES or fit_name:
                item.add_marker(pytest.mark.fit)
        if item.nodeid.startswith(_SLOW):
            item.add_marker(pytest.mark.slow)
    _write_fit_modules(items)


def _write_fit_modules(items: list[pytest.Item]) -> None:
    """With FITAPI_FIT_MODULES_FILE set (the test command's first pass), write the test files
    that hold differential fits, one per line: the baseline-kernel pass then collects only those
    files. Each xdist worker collects the same items and writes the same list, atomically."""
    target = os.environ.get("FITAPI_FIT_MODULES_FILE")
    if not target:
        return
    modules = sorted(
        {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("fit")}
    )
    partial = f"{target}.{os.getpid()}"
    Path(partial).write_text("".join(f"{m}\n" for m in modules))
    os.replace(partial, target)
