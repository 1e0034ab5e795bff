"""The scenario end to end through the service: from POST fit to the final status, per epoch,
beside the same epochs in the engine alone in this process (the ratio is what the service adds:
a committed database row and a lease check per epoch, dispatch, loading, the final checkpoint).

Embedded default (SQLite, in-process executor):
    python -m bench.bench_service
Distributed (uvicorn + a Celery worker on Postgres and Redis):
    DATABASE_URL=postgresql+psycopg://... REDIS_URL=redis://... python -m bench.bench_service
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.bench_engine import engine_loop
from tests.e2e.harness import Process, start_api, start_worker
from tests.support import scenario


def run(client: httpx.Client, epochs: int) -> float:
    model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 0}).json()
    body = scenario.fit_body(epochs=epochs, callbacks=[], seed=0)
    start = time.perf_counter()
    job = client.post(f"/v1/models/{model['id']}/fit", json=body).json()
    while True:
        job = client.get(f"/v1/jobs/{job['id']}").json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.05)  # light polling: the bench must not load the service it measures
    elapsed = time.perf_counter() - start
    assert job["status"] == "succeeded", job
    assert job["epochs_done"] == epochs
    return elapsed / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    distributed = bool(os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {"DATA_DIR": str(Path(tmp) / "data"),
               "CELERY_QUEUE": f"fitapi-bench-{uuid.uuid4().hex[:8]}"}  # fmt: skip
        if distributed:
            # The bench migrates the given database itself.
            from app.db.migrate import upgrade_head

            upgrade_head(os.environ["DATABASE_URL"])
        api, base = start_api(env, Path(tmp))
        procs: list[Process] = [api]
        if distributed:
            procs.append(start_worker(env, Path(tmp)))
        try:
            with httpx.Client(base_url=base, timeout=120) as client:
                run(client, 10)  # warm up
                service = [run(client, args.epochs) for _ in range(args.repeats)]
        finally:
            for p in procs:
                p.stop()
    import torch

    engine = [engine_loop(args.epochs, torch.device("cpu")) for _ in range(args.repeats)]
    s, e = statistics.median(service), statistics.median(engine)
    mode = "distributed (Postgres + Redis + Celery worker)" if distributed else "embedded (SQLite)"
    print(f"mode={mode} epochs={args.epochs} repeats={args.repeats}")
    print(f"service, submit to final status: {s * 1e3:8.3f} ms/epoch (median)")
    print(f"engine alone, same epochs      : {e * 1e3:8.3f} ms/epoch (median)")
    print(f"ratio service/engine: {s / e:.2f}x")


if __name__ == "__main__":
    main()
