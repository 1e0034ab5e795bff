"""Every revision upgrades and downgrades on the real Postgres, and the models match the
migrated schema."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, create_engine, inspect, text

from app.db.migrate import ROOT, upgrade_head
from app.db.models import Base
from app.db.session import make_engine


def _config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", url)
    return config


def test_upgrade_downgrade_upgrade(pg_database: Callable[[], str]) -> None:
    url = pg_database()  # already at head
    command.downgrade(_config(url), "base")
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade_head(url)
    assert {"models", "jobs", "epoch_logs", "checkpoints"} <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


MODEL, PARENT, CHILD = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _job(engine: Engine, job_id: uuid.UUID, **extra: object) -> None:
    """A job row with an epoch log and a checkpoint, in columns every revision has."""
    meta = MetaData()
    meta.reflect(engine)
    tables = meta.tables
    sqlite = engine.dialect.name == "sqlite"
    ids = {k: (v.hex if sqlite else v) for k, v in {"job": job_id, "model": MODEL,
                                                     "ckpt": uuid.uuid4()}.items()}  # fmt: skip
    with engine.begin() as conn:
        if job_id == PARENT:
            conn.execute(tables["models"].insert().values(
                id=ids["model"], name="m", config={}, seed=1, summary={}, created_at=NOW,
                updated_at=NOW))  # fmt: skip
        conn.execute(tables["jobs"].insert().values(
            id=ids["job"], model_id=ids["model"], kind="fit", status="succeeded", attempt=1,
            max_attempts=3, cancel_requested=False, request={}, data_key="d", epochs=2,
            epochs_done=2, created_at=NOW, dispatched_at=NOW, updated_at=NOW, **extra,
        ))  # fmt: skip
        conn.execute(
            tables["epoch_logs"]
            .insert()
            .values(job_id=ids["job"], epoch=0, logs={"loss": 1.0}, attempt=1, created_at=NOW)
        )
        conn.execute(tables["checkpoints"].insert().values(
            id=ids["ckpt"], job_id=ids["job"], epoch=0, attempt=1, key="k", size_bytes=1,
            logs={}, created_at=NOW))  # fmt: skip


def _counts(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("jobs", "epoch_logs", "checkpoints")]  # fmt: skip


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_job_resume_columns_keep_existing_rows_both_ways(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Revision 0004 on a database holding rows, on Postgres and on the embedded SQLite."""
    if dialect == "postgresql":
        url = request.getfixturevalue("pg_database")()
        command.downgrade(_config(url), "base")
    else:
        url = f"sqlite:///{tmp_path / 'fitapi.db'}"
    command.upgrade(_config(url), "0003")
    engine = make_engine(url)  # SQLite with foreign keys on, as the app runs it
    _job(engine, PARENT)
    command.upgrade(_config(url), "0004")
    assert _counts(engine) == [1, 1, 1]  # no table rebuilt: nothing cascaded away
    parent = PARENT.hex if dialect == "sqlite" else PARENT
    _job(engine, CHILD, parent_job_id=parent, start_checkpoint_id=parent)
    assert _counts(engine) == [2, 2, 2]
    command.downgrade(_config(url), "0003")
    columns = {c["name"] for c in inspect(engine).get_columns("jobs")}
    assert not {"parent_job_id", "start_checkpoint_id"} & columns
    assert _counts(engine) == [2, 2, 2]
    command.upgrade(_config(url), "head")
    with engine.begin() as conn:  # the parent goes: its child stays, unlinked
        conn.execute(text("UPDATE jobs SET parent_job_id = :p WHERE id != :p"), {"p": parent})
        conn.execute(text("DELETE FROM jobs WHERE id = :p"), {"p": parent})
        left = conn.execute(text("SELECT parent_job_id FROM jobs")).scalars().all()
    assert left == [None] and _counts(engine) == [1, 1, 1]
    engine.dispose()
