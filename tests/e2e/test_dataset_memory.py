"""Memory, measured (never time): uploading a 1 GiB `.npy` raises the API process's peak
resident memory by less than 100 MB, and a fit over it keeps the worker's growth under 200 MB
plus the model. Real processes: uvicorn and a Celery worker on Postgres and Redis."""

from __future__ import annotations

import io
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.e2e.harness import start_api_and_workers
from tests.e2e.scenario_checks import wait_for

pytestmark = pytest.mark.e2e
ROWS, FEATURES = 1 << 20, 1024  # uint8: 1 GiB
MB = 1 << 20
NPY = {"content-type": "application/x-npy"}


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def reset_peak(pid: int) -> int:
    """Reset the process's peak resident memory (VmHWM) to what it holds now; return that."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return status_kb(pid, "VmRSS") * 1024


def growth(pid: int, baseline: int) -> int:
    return status_kb(pid, "VmHWM") * 1024 - baseline


def big_npy(path: Path) -> None:
    """Row r, column c holds (31 r + c) % 251: row r is row (31 r) % 251 of a 251-row table, so
    the gigabyte is written by copying table rows, not by computing each byte."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(ROWS, FEATURES))
    table = ((np.arange(251)[:, None] + np.arange(FEATURES)) % 251).astype(np.uint8)
    step = 1 << 16
    for lo in range(0, ROWS, step):
        rows = np.arange(lo, min(lo + step, ROWS))
        out[lo : lo + step] = table[rows * 31 % 251]
    out.flush()
    del out


@pytest.fixture(scope="module")
def stack(
    pg_database: Callable[[], str], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, int, int, Path]]:
    tmp = tmp_path_factory.mktemp("memory")
    if shutil.disk_usage(tmp).free < 4 << 30:
        pytest.skip("needs 4 GiB of free disk for a 1 GiB dataset and its upload")
    env = {"DATABASE_URL": pg_database(), "REDIS_URL": redis_url,
           "CELERY_QUEUE": f"fitapi-test-{uuid.uuid4().hex[:8]}", "DATA_DIR": str(tmp / "data"),
           "JOB_HEARTBEAT_S": "0.2", "CHECKPOINT_EVERY_S": "3600"}  # fmt: skip
    api, base, (worker,) = start_api_and_workers(env, tmp, [("worker", {})])
    try:
        with httpx.Client(base_url=base, timeout=300) as client:
            yield client, api.proc.pid, worker.proc.pid, tmp
    finally:
        worker.stop()
        api.stop()


def test_a_1gib_upload_and_a_fit_over_it_stay_small(
    stack: tuple[httpx.Client, int, int, Path],
) -> None:
    client, api_pid, worker_pid, tmp = stack
    source = tmp / "x.npy"
    big_npy(source)

    def chunks() -> Iterator[bytes]:
        with source.open("rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk

    baseline = reset_peak(api_pid)
    r = client.post("/v1/datasets?format=npy", content=chunks(), headers=NPY)
    assert r.status_code == 201, r.text
    upload_growth = growth(api_pid, baseline)
    source.unlink()
    x = r.json()
    assert x["arrays"][0]["shape"] == [ROWS, FEATURES] and x["arrays"][0]["dtype"] == "uint8"
    print(f"upload of {ROWS * FEATURES} bytes: API peak RSS +{upload_growth / MB:.1f} MiB")
    assert upload_growth < 100 * MB, f"the upload raised the API's peak RSS by {upload_growth}"

    y = (np.arange(ROWS) % 3 == 0).astype(np.int64)
    body = io.BytesIO()
    np.save(body, y)
    r = client.post("/v1/datasets?format=npy&array=y", content=body.getvalue(), headers=NPY)
    assert r.status_code == 201, r.text
    y_id = r.json()["id"]

    model = {"class_name": "Sequential", "config": {"name": "wide", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, FEATURES]}},
        {"class_name": "Rescaling", "config": {"scale": 1 / 255}},
        {"class_name": "Dense", "config": {"units": 1, "activation": "sigmoid"}}]}}  # fmt: skip

    def fit(rows: int) -> httpx.Response:
        model_id = client.post("/v1/models", json={"config": model, "seed": 1}).json()["id"]
        return client.post(f"/v1/models/{model_id}/fit", json={
            "compile": {"optimizer": "adam", "loss": "binary_crossentropy"},
            "x": {"dataset": x["id"], "array": "x", "rows": [0, rows]},
            "y": {"dataset": y_id, "array": "y", "rows": [0, rows]},
            "batch_size": 2048, "epochs": 1, "seed": 1,
        })  # fmt: skip

    # A first, smaller fit (68 MB of rows: read from the file too, not from memory) loads what
    # any such fit needs (code pages, kernels, allocator pools): what is measured after it is
    # what the dataset's size adds.
    warm = fit(70_000)
    assert wait_for(client, warm.json()["id"], {"succeeded", "failed"})["status"] == "succeeded"
    baseline = reset_peak(worker_pid)
    r = fit(ROWS)
    assert r.status_code == 202, r.text
    job = wait_for(client, r.json()["id"], {"succeeded", "failed"}, timeout=300)
    assert job["status"] == "succeeded", job
    fit_growth = growth(worker_pid, baseline)
    model_bytes = (FEATURES + 1) * 4
    print(f"fit over it: worker peak RSS +{fit_growth / MB:.1f} MiB")
    assert fit_growth < 200 * MB + model_bytes, f"the fit raised the worker's peak by {fit_growth}"
