"""The scenario end to end through the service: from POST fit to the job's end, per epoch,
beside the same epochs in the engine alone in this process, the two interleaved (the ratio is
what the service adds: the epoch rows, the lease heartbeat, dispatch, loading, the final
checkpoint and commit). Also where the job's time went, from its own timestamps: dispatch
(POST answered to `started_at`), the epochs (`started_at` to the last epoch row's end), and
the end (the last epoch's end to `finished_at`: the final checkpoint and commit).

    python -m bench.bench_service [--epochs 300] [--repeats 3] [--mode embedded,distributed]

Embedded: SQLite and the in-process executor. Distributed: uvicorn and a Celery worker on a
scratch PostgreSQL database (BENCH_PG_ADMIN_URL's server) and Redis (BENCH_REDIS_URL).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import torch

from bench.bench_engine import engine_loop
from bench.report import REDIS_URL, Row, scratch_database, services_up
from tests.e2e.harness import Process, start_api, start_worker
from tests.support import scenario


def _at(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run(client: httpx.Client, epochs: int) -> dict[str, float]:
    """One fit through the service: seconds per epoch from POST to the job's `finished_at`
    (the server's clock is this machine's), and the job's phases in seconds."""
    model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 0}).json()
    body = scenario.fit_body(epochs=epochs, callbacks=[], seed=0)
    start = time.time()
    job = client.post(f"/v1/models/{model['id']}/fit", json=body).json()
    posted = time.time()
    while True:
        job = client.get(f"/v1/jobs/{job['id']}").json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.1)  # light polling: the bench must not load the service it measures
    assert job["status"] == "succeeded", job
    assert job["epochs_done"] == epochs
    rows = client.get(f"/v1/jobs/{job['id']}/logs", params={"after": epochs - 2}).json()["items"]
    last = _at(rows[-1]["created_at"])
    started, finished = _at(job["started_at"]), _at(job["finished_at"])
    return {"per_epoch": (finished - start) / epochs, "dispatch": started - posted,
            "epochs": last - started, "end": finished - last}  # fmt: skip


@contextmanager
def stack(mode: str, tmp: Path) -> Iterator[str]:
    """The service in `mode`; yields its base URL."""
    with ExitStack() as stack:
        env = {"DATA_DIR": str(tmp / mode), "CELERY_QUEUE": f"fitapi-bench-{uuid.uuid4().hex[:8]}",
               "DATABASE_URL": "", "REDIS_URL": ""}  # fmt: skip
        if mode == "distributed":
            env["DATABASE_URL"] = stack.enter_context(scratch_database())
            env["REDIS_URL"] = REDIS_URL
        api, base = start_api(env, tmp)
        procs: list[Process] = [api]
        stack.callback(lambda: [p.stop() for p in procs])
        if mode == "distributed":
            procs.append(start_worker(env, tmp))
        yield base


def compare(mode: str, epochs: int, repeats: int) -> dict[str, float]:
    """Medians over `repeats` of the service's seconds per epoch (and its phases) and the
    engine's alone, run alternately."""
    runs: list[dict[str, float]] = []
    engine: list[float] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        stack(mode, Path(tmp)) as base,
        httpx.Client(base_url=base, timeout=300) as client,
    ):
        run(client, 10)  # warm up both
        engine_loop(10, torch.device("cpu"))
        for _ in range(repeats):
            runs.append(run(client, epochs))
            engine.append(engine_loop(epochs, torch.device("cpu")))
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return {**out, "engine": statistics.median(engine)}


def measure(quick: bool = False, modes: tuple[str, ...] = ("embedded", "distributed"),
            epochs: int = 300, repeats: int = 3) -> list[Row]:  # fmt: skip
    """The rows of `python -m bench.run_all`: one per mode (distributed only where PostgreSQL
    and Redis answer)."""
    if quick:
        epochs, repeats = 30, 1
    rows: list[Row] = []
    for mode in modes:
        if mode == "distributed" and not services_up():
            print("distributed: skipped (PostgreSQL or Redis not reachable)")
            continue
        r = compare(mode, epochs, repeats)
        ms = {k: v * 1e3 for k, v in r.items()}
        print(f"{mode}: epochs={epochs} repeats={repeats} service {ms['per_epoch']:.3f} "
              f"ms/epoch, engine alone {ms['engine']:.3f} ms/epoch, ratio "
              f"{r['per_epoch'] / r['engine']:.2f}x; "
              f"dispatch {ms['dispatch']:.0f} ms, epochs {ms['epochs'] / epochs:.3f} ms/epoch, "
              f"end {ms['end']:.0f} ms", flush=True)  # fmt: skip
        rows.append(Row(
            benchmark=f"tiny job ({epochs} epochs of the first scenario), {mode}: POST fit to "
            "the job's end, per epoch",
            ours=f"{ms['per_epoch']:.2f} ms", reference=f"engine alone {ms['engine']:.2f} ms",
            ratio=r["per_epoch"] / r["engine"], goal="<= 1.3x",
            note=f"dispatch {ms['dispatch']:.0f} ms, epochs {ms['epochs'] / epochs:.2f} ms each, "
            f"final checkpoint and commit {ms['end']:.0f} ms",
        ))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", default="embedded,distributed")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    measure(args.quick, tuple(args.mode.split(",")), args.epochs, args.repeats)


if __name__ == "__main__":
    main()
