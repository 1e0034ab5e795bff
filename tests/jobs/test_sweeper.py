"""The sweeper on real files and a real database (SQLite and Postgres): only files that no row
references and that are older than the grace period go; folders go whole; several sweepers at
once remove each file once."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.config import Settings
from app.db.migrate import upgrade_head
from app.db.models import DEFAULT_PROJECT_ID, CheckpointRow, DatasetRow, JobRow, ModelRow
from app.db.session import unit_of_work
from app.jobs.sweeper import Sweeper, sweep
from app.runtime.context import AppContext, build_context

HOUR = 3600.0


@pytest.fixture(params=["sqlite", "postgres"])
def ctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppContext]:
    if request.param == "postgres":
        yield request.getfixturevalue("pg_ctx")
        return
    settings = Settings(data_dir=tmp_path)
    upgrade_head(settings.resolved_database_url)
    context = build_context(settings)
    yield context
    context.close()


def _file(ctx: AppContext, key: str, *, age_s: float = 2 * HOUR, size: int = 10) -> str:
    path = ctx.store.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    _age(path, age_s)
    return key


def _age(path: Path, age_s: float) -> None:
    t = time.time() - age_s
    os.utime(path, (t, t))


def _exists(ctx: AppContext, key: str) -> bool:
    return (ctx.store.root / key).exists()


def _rows(ctx: AppContext, **keys: Any) -> None:
    with unit_of_work(ctx.sessions) as s:
        model = ModelRow(name="m", config={}, seed=1, summary={}, project_id=DEFAULT_PROJECT_ID,
                         weights_key=keys["weights"])  # fmt: skip
        s.add(model)
        s.flush()
        job = JobRow(model_id=model.id, project_id=DEFAULT_PROJECT_ID, request={}, epochs=1,
                     data_key=keys["inputs"], base_weights_key=keys["base"],
                     status="succeeded")  # fmt: skip
        s.add(job)
        s.flush()
        s.add(CheckpointRow(job_id=job.id, epoch=0, attempt=1, key=keys["checkpoint"],
                            size_bytes=10, logs={}))  # fmt: skip
        s.add(DatasetRow(id=keys["dataset"], format="npy", sha256="0" * 64, size_bytes=10,
                         arrays=[], project_id=DEFAULT_PROJECT_ID))  # fmt: skip


def test_only_old_unreferenced_files_go(ctx: AppContext, caplog: pytest.LogCaptureFixture) -> None:
    model, job, gone = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    dataset, orphan_dataset, young_dataset = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    referenced = {
        "weights": _file(ctx, f"models/{model}/weights-a.safetensors"),
        "base": _file(ctx, f"models/{model}/weights-b.safetensors"),  # only a job's base
        "inputs": _file(ctx, f"jobs/{job}/inputs.safetensors"),
        "checkpoint": _file(ctx, f"jobs/{job}/checkpoints/a1-e000000.safetensors"),
    }
    _file(ctx, f"datasets/{dataset}/x.npy")
    _rows(ctx, **referenced, dataset=dataset)
    old_orphans = {
        _file(ctx, f"models/{model}/weights-c.safetensors", size=7): 7,  # replaced, not deleted
        _file(ctx, f"models/{gone}/weights-d.safetensors", size=5): 5,  # a deleted model's
        _file(ctx, f"jobs/{job}/checkpoints/a2-e000001.safetensors", size=3): 3,  # unregistered
        _file(ctx, f"jobs/{job}/checkpoints/.tmp-abc", size=2): 2,  # an interrupted write
        _file(ctx, "incoming/.tmp-upload-abc", size=4): 4,  # an interrupted upload
    }
    _file(ctx, f"datasets/{orphan_dataset}/x.npy", size=6)
    _file(ctx, f"datasets/{orphan_dataset}/y.npy", size=8)
    _age(ctx.store.root / f"datasets/{orphan_dataset}", 2 * HOUR)
    old_orphans[f"datasets/{orphan_dataset}"] = 14
    _file(ctx, "incoming/.tmp-predict-old/out.npy", size=9)
    _age(ctx.store.root / "incoming/.tmp-predict-old", 2 * HOUR)
    old_orphans["incoming/.tmp-predict-old"] = 9
    # A folder another sweeper claimed and died removing; one another sweeper is removing now.
    _file(ctx, "datasets/.sweep-1000-abc/x.npy", size=1)
    _age(ctx.store.root / "datasets/.sweep-1000-abc", 2 * HOUR)
    old_orphans["datasets/.sweep-1000-abc"] = 1
    claimed = f"datasets/.sweep-{int(time.time())}-abc"
    _file(ctx, f"{claimed}/x.npy")
    _age(ctx.store.root / claimed, 2 * HOUR)
    young = [
        _file(ctx, f"models/{model}/weights-e.safetensors", age_s=0),  # its row not yet committed
        _file(ctx, f"jobs/{uuid.uuid4()}/inputs.safetensors", age_s=0),
        _file(ctx, f"jobs/{job}/checkpoints/.tmp-def", age_s=0),  # being written
        _file(ctx, f"datasets/{young_dataset}/x.npy"),  # a folder with one file still written
        _file(ctx, f"datasets/{young_dataset}/y.npy", age_s=0),
        _file(ctx, "incoming/.tmp-dataset-new/x.npy", age_s=0),
        _file(ctx, "other/notes.txt"),  # not an area the service writes: never touched
        f"{claimed}/x.npy",
    ]
    # An empty folder just made (a write is about to land in it) stays; one long unused goes.
    (ctx.store.root / "models" / str(uuid.uuid4())).mkdir()
    empty = ctx.store.root / "models" / str(uuid.uuid4())
    empty.mkdir()
    _age(empty, 2 * HOUR)

    with caplog.at_level(logging.INFO, logger="app.jobs.sweeper"):
        removed = sweep(ctx)

    assert {r.key: r.size_bytes for r in removed} == old_orphans
    for key in old_orphans:
        assert not _exists(ctx, key), key
    for key in [*referenced.values(), f"datasets/{dataset}/x.npy", *young]:
        assert _exists(ctx, key), key
    assert not empty.exists()
    assert len(list((ctx.store.root / "models").iterdir())) == 3  # the model's, gone's, a new one
    for key, size in old_orphans.items():
        assert f"swept {key} ({size} bytes)" in caplog.text
    assert sweep(ctx) == []


def test_several_sweepers_remove_each_file_once(ctx: AppContext) -> None:
    orphans = {_file(ctx, f"models/{uuid.uuid4()}/weights-{i}.safetensors") for i in range(40)}
    for i in range(10):
        folder = f"datasets/{uuid.uuid4()}"
        _file(ctx, f"{folder}/x{i}.npy")
        _age(ctx.store.root / folder, 2 * HOUR)
        orphans.add(folder)
    barrier = threading.Barrier(4)
    results: list[list[str]] = []

    def run() -> None:
        barrier.wait()
        results.append([r.key for r in sweep(ctx)])

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = [key for result in results for key in result]
    assert sorted(keys) == sorted(orphans)
    assert not any(_exists(ctx, key) for key in orphans)


def test_the_interval_setting_turns_it_off_and_spaces_passes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, sweep_interval_s=0)
    upgrade_head(settings.resolved_database_url)
    ctx = build_context(settings)
    try:
        orphan = _file(ctx, "models/m/weights-a.safetensors")
        Sweeper(ctx).run_if_due()
        assert _exists(ctx, orphan)
        ctx.settings.sweep_interval_s = HOUR
        sweeper = Sweeper(ctx)
        sweeper.run_if_due()  # the first pass runs at once
        assert not _exists(ctx, orphan)
        orphan = _file(ctx, "models/m/weights-b.safetensors")
        sweeper.run_if_due()  # the next one only after the interval
        assert _exists(ctx, orphan)
    finally:
        ctx.close()
