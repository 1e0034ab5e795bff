"""Datasets, measured side by side in one run:

1. upload rate of an `.npy` over loopback (POST /v1/datasets to uvicorn) beside writing the
   same bytes to a file (with fsync) on the same disk;
2. MLP 784-256-128-10 on 60,000 rows, batch 128, Adam, 2 epochs: samples/s of the engine
   reading a stored dataset from disk (and from memory) beside a raw torch loop over in-memory
   tensors (fused cross-entropy on logits, torch.optim.Adam), in this process;
3. the same fit end to end through the service, from POST fit to `succeeded`, by reference to
   uploaded datasets: embedded (SQLite, in-process executor), and distributed (uvicorn and a
   Celery worker on Postgres and Redis);
4. the peak resident memory of the process that trained (the worker), beside the dataset's size.

    python -m bench.bench_data [--device cpu|cuda] [--repeats 3]

The distributed run takes a scratch database on BENCH_PG_ADMIN_URL's PostgreSQL server and
BENCH_REDIS_URL's Redis (both default to the local ones), and is left out when they do not
answer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
import torch.nn.functional as F

from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from bench.report import REDIS_URL, Row, scratch_database, services_up
from tests.e2e.harness import Process, start_api, start_worker

ROWS, FEATURES, CLASSES, BATCH, EPOCHS = 60_000, 784, 10, 128, 2
MLP: dict[str, Any] = {"class_name": "Sequential", "config": {"name": "mlp", "layers": [
    {"class_name": "InputLayer", "config": {"batch_shape": [None, FEATURES]}},
    {"class_name": "Dense", "config": {"units": 256, "activation": "relu"}},
    {"class_name": "Dense", "config": {"units": 128, "activation": "relu"}},
    {"class_name": "Dense", "config": {"units": CLASSES, "activation": "softmax"}}]}}  # fmt: skip
COMPILE = {"optimizer": "adam", "loss": "sparse_categorical_crossentropy",
           "metrics": ["accuracy"]}  # fmt: skip
MB = 1e6


def make_data(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    x = rng.random((ROWS, FEATURES), dtype=np.float32)
    y = rng.integers(0, CLASSES, ROWS).astype(np.int64)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    return folder / "x.npy", folder / "y.npy"


def raw_loop(x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    """Samples per second of a hand-written loop over in-memory tensors."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
        torch.nn.ReLU(), torch.nn.Linear(128, CLASSES),
    ).to(device)  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    x, y = x.to(device), y.to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    start = time.perf_counter()
    for _ in range(EPOCHS):
        order = torch.randperm(ROWS, generator=gen, device=device)
        total = torch.zeros(2, device=device)
        for lo in range(0, ROWS, BATCH):
            idx = order[lo : lo + BATCH]
            logits = net(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                total[0] += loss * len(idx)
                total[1] += (logits.argmax(1) == y[idx]).sum()
        total.tolist()  # one host read per epoch, as the engine's logs
    return ROWS * EPOCHS / (time.perf_counter() - start)


def engine_fit(x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    trainer = Trainer(Model.from_config(MLP, seed=0), CompileSpec.parse(COMPILE), device=device)
    start = time.perf_counter()
    trainer.fit(x, y, args=FitArgs(batch_size=BATCH, epochs=EPOCHS, seed=0))
    return ROWS * EPOCHS / (time.perf_counter() - start)


def file_write_rate(source: Path, folder: Path) -> float:
    data = source.read_bytes()
    start = time.perf_counter()
    with (folder / "copy.bin").open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    rate = len(data) / (time.perf_counter() - start) / MB
    (folder / "copy.bin").unlink()
    return rate


def upload(client: httpx.Client, path: Path, array: str) -> tuple[str, float]:
    def chunks() -> Iterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk

    start = time.perf_counter()
    r = client.post(f"/v1/datasets?format=npy&array={array}", content=chunks(),
                    headers={"content-type": "application/x-npy"})  # fmt: skip
    elapsed = time.perf_counter() - start
    r.raise_for_status()
    return str(r.json()["id"]), path.stat().st_size / elapsed / MB


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def fit_through(client: httpx.Client, body: dict[str, Any]) -> float:
    """Seconds from POST fit to `succeeded`, on a new model."""
    model = client.post("/v1/models", json={"config": MLP, "seed": 0}).json()["id"]
    start = time.perf_counter()
    job = client.post(f"/v1/models/{model}/fit", json=body).json()
    while job["status"] in ("queued", "running"):
        time.sleep(0.05)  # light polling: the bench must not load the service it measures
        job = client.get(f"/v1/jobs/{job['id']}").json()
    elapsed = time.perf_counter() - start
    assert job["status"] == "succeeded", job
    return elapsed


def service_fit(
    env: dict[str, str],
    folder: Path,
    distributed: bool,
    repeats: int,
    raw_data: tuple[torch.Tensor, torch.Tensor, torch.device],
) -> dict[str, float]:
    api, base = start_api(env, folder)
    procs: list[Process] = [api]
    if distributed:
        procs.append(start_worker(env, folder))
    trainer_pid = procs[-1].proc.pid
    try:
        with httpx.Client(base_url=base, timeout=600) as client:
            write = file_write_rate(folder / "x.npy", folder)  # the same bytes, just before
            x_id, up_rate = upload(client, folder / "x.npy", "x")
            y_id, _ = upload(client, folder / "y.npy", "y")
            body = {"compile": COMPILE, "x": {"dataset": x_id, "array": "x"},
                    "y": {"dataset": y_id, "array": "y"}, "batch_size": BATCH,
                    "epochs": EPOCHS, "seed": 0}  # fmt: skip
            few = {"x": {**body["x"], "rows": [0, 4 * BATCH]}, "epochs": 1,
                   "y": {**body["y"], "rows": [0, 4 * BATCH]}}  # fmt: skip
            fit_through(client, {**body, **few})  # warm-up: the worker's first job
            # Each service fit beside a raw loop run just before it: this machine's speed
            # drifts over a minute, and the ratio should not.
            ratios, rates = [], []
            for _ in range(repeats):
                raw = raw_loop(*raw_data)
                rates.append(ROWS * EPOCHS / fit_through(client, body))
                ratios.append(rates[-1] / raw)
            return {
                "upload_mb_s": up_rate,
                "write_mb_s": write,
                "samples_s": statistics.median(rates),
                "ratio": statistics.median(ratios),
                "peak_rss": peak_rss(trainer_pid),
            }
    finally:
        for p in procs:
            p.stop()


def collect(device: torch.device, repeats: int, database_url: str | None) -> dict[str, Any]:
    """Every figure of the module; the distributed ones where `database_url` (migrated) is
    given, with Redis at REDIS_URL."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        x_path, y_path = make_data(folder)
        size = x_path.stat().st_size
        x_map = np.load(x_path, mmap_mode="r")
        y_map = np.load(y_path, mmap_mode="r")
        x_mem, y_mem = np.load(x_path), np.load(y_path)
        runs: dict[str, list[float]] = {"raw": [], "disk": [], "memory": []}
        for _ in range(repeats):  # interleaved, so drifts of the machine hit all three
            runs["raw"].append(raw_loop(torch.from_numpy(x_mem), torch.from_numpy(y_mem), device))
            runs["disk"].append(engine_fit(x_map, y_map, device))
            runs["memory"].append(engine_fit(x_mem, y_mem, device))
        queue = f"fitapi-bench-{uuid.uuid4().hex[:8]}"
        raw_data = (torch.from_numpy(x_mem), torch.from_numpy(y_mem), device)
        modes = {
            "embedded": service_fit(
                {
                    "DATA_DIR": str(folder / "embedded"),
                    "CELERY_QUEUE": queue,
                    "DATABASE_URL": "",
                    "REDIS_URL": "",
                },
                folder,
                False,
                repeats,
                raw_data,
            )
        }
        if database_url is not None:
            modes["distributed"] = service_fit(
                {"DATA_DIR": str(folder / "distributed"), "CELERY_QUEUE": queue,
                 "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL},
                folder, True, repeats, raw_data,
            )  # fmt: skip
    return {"size": size, "modes": modes,
            **{k: statistics.median(v) for k, v in runs.items()}}  # fmt: skip


def measure(quick: bool = False, repeats: int = 3) -> list[Row]:
    """The rows of `python -m bench.run_all` (none with --quick: the data is 188 MB)."""
    if quick:
        print("bench_data: skipped with --quick")
        return []
    with ExitStack() as stack:
        url = stack.enter_context(scratch_database()) if services_up() else None
        r = collect(torch.device("cpu"), repeats, url)
    rows = [
        Row(benchmark=f"MLP fit reading a stored {r['size'] / MB:.0f} MB dataset from disk: "
            "samples/s", ours=f"{r['disk']:,.0f}", reference=f"raw loop, memory {r['raw']:,.0f}",
            ratio=r["disk"] / r["raw"], goal=""),
        Row(benchmark="the same fit from arrays in memory: samples/s",
            ours=f"{r['memory']:,.0f}", reference=f"raw loop, memory {r['raw']:,.0f}",
            ratio=r["memory"] / r["raw"], goal=""),
    ]  # fmt: skip
    for mode, m in r["modes"].items():
        rows.append(Row(
            benchmark=f"dataset upload over loopback, {mode}: MB/s",
            ours=f"{m['upload_mb_s']:.0f}", reference=f"file write + fsync {m['write_mb_s']:.0f}",
            ratio=m["upload_mb_s"] / m["write_mb_s"], goal="",
        ))  # fmt: skip
        rows.append(Row(
            benchmark=f"that fit through the service by dataset reference, {mode}: samples/s",
            ours=f"{m['samples_s']:,.0f}", reference="raw loop run just before each",
            ratio=m["ratio"], goal="",
            note=f"peak memory of the process that trained {m['peak_rss'] / MB:.0f} MB, "
            f"the dataset {r['size'] / MB:.0f} MB",
        ))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    with ExitStack() as stack:
        url = stack.enter_context(scratch_database()) if services_up() else None
        r = collect(device, args.repeats, url)
    raw, on_disk, in_memory, size = r["raw"], r["disk"], r["memory"], r["size"]
    print(f"device={device} rows={ROWS} features={FEATURES} batch={BATCH} epochs={EPOCHS} "
          f"dataset={size / MB:.0f} MB")  # fmt: skip
    for name, m in r["modes"].items():
        print(
            f"upload, {name:<11}: {m['upload_mb_s']:6.0f} MB/s   file write + fsync just "
            f"before: {m['write_mb_s']:6.0f} MB/s   ratio {m['upload_mb_s'] / m['write_mb_s']:.2f}x"
        )
    print(f"raw torch loop, memory : {raw:8.0f} samples/s (median of {args.repeats})")
    print(f"engine, dataset on disk: {on_disk:8.0f} samples/s   ratio {on_disk / raw:.2f}x")
    print(f"engine, arrays in memory: {in_memory:7.0f} samples/s   ratio {in_memory / raw:.2f}x")
    for name, m in r["modes"].items():
        print(
            f"service {name:<11}: {m['samples_s']:8.0f} samples/s   ratio "
            f"{m['ratio']:.2f}x (to a raw loop run just before each)"
        )
        print(
            f"  peak RSS of the process that trained: {m['peak_rss'] / MB:.0f} MB "
            f"(dataset {size / MB:.0f} MB)"
        )
    if "distributed" not in r["modes"]:
        print("service distributed: skipped (PostgreSQL or Redis not reachable)")


if __name__ == "__main__":
    main()
