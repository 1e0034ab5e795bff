"""Predict serving: fitapi's `POST /v1/models/{id}/predict` beside the floor, a minimal FastAPI
endpoint with the same model's weights in memory (bench/predict_floor.py), both under uvicorn
with the same settings, driven by one load client in this process.

The model is a 784-128-10 MLP (ReLU, softmax) created through fitapi's API on the embedded
default (SQLite, no key); the floor reads the weights fitapi serves (`GET .../weights`). Each
request carries one row, as JSON (`{"x": [[...]]}`) or as an `.npy` body
(`Content-Type: application/x-npy`, `Accept: application/x-npy`), at concurrency 1, 10 and 50:
that many keep-alive connections, each sending its next request when its answer is in. Before
timing, both servers answer the same rows and the predictions are compared bit for bit.

    python -m bench.bench_predict [--quick] [--requests N]

It prints p50 and p99 latency (ms) and throughput (req/s) for each, with the ratios the goals
name: fitapi's p50 over the floor's at concurrency 1 (goal <= 1.5x), fitapi's throughput over
the floor's at 10 (goal >= 0.7x) and at 50.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.e2e.harness import Process, free_port, start_embedded_api, wait_api

NPY = "application/x-npy"
CONCURRENCY = (1, 10, 50)
BODIES = ("json", "npy")
# The project's request rate stays checked, at a limit the load never reaches (the default,
# 100 requests/s, would answer 429s: that is the quota working, not serving speed).
SERVER_ENV = {"QUOTA_REQUESTS_PER_S": "1000000"}
MLP = {
    "class_name": "Sequential",
    "config": {
        "name": "mlp",
        "layers": [
            {"class_name": "InputLayer", "config": {"batch_shape": [None, 784]}},
            {"class_name": "Dense", "config": {"units": 128, "activation": "relu"}},
            {"class_name": "Dense", "config": {"units": 10, "activation": "softmax"}},
        ],
    },
}


# -- the load client ---------------------------------------------------------------------------
@dataclass
class Target:
    """One server's predict endpoint with its requests, each one row, built once as raw bytes."""

    name: str
    host: str
    port: int
    requests: list[bytes]
    pid: int  # the server's process


def _raw_requests(base: str, path: str, rows: np.ndarray, body: str) -> list[bytes]:
    host = base.removeprefix("http://")
    out = []
    for row in rows:
        if body == "json":
            data = json.dumps({"x": [row.tolist()]}).encode()
            kinds = "Content-Type: application/json\r\nAccept: application/json\r\n"
        else:
            buf = io.BytesIO()
            np.save(buf, row[None, :], allow_pickle=False)
            data = buf.getvalue()
            kinds = f"Content-Type: {NPY}\r\nAccept: {NPY}\r\n"
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{kinds}Content-Length: {len(data)}\r\n\r\n"
        out.append(head.encode() + data)
    return out


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bytes]:
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _load(target: Target, total: int, concurrency: int) -> tuple[list[float], float]:
    """`total` requests over `concurrency` keep-alive connections: the latencies (s) and the
    wall time (s) from the first request to the last answer."""
    latencies: list[float] = []
    next_index = 0
    conns = [await asyncio.open_connection(target.host, target.port) for _ in range(concurrency)]

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal next_index
        while next_index < total:
            raw = target.requests[next_index % len(target.requests)]
            next_index += 1
            start = time.perf_counter()
            status, body = await _exchange(reader, writer, raw)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                raise RuntimeError(f"{target.name}: HTTP {status}: {body[:300]!r}")

    start = time.perf_counter()
    try:
        await asyncio.gather(*(worker(r, w) for r, w in conns))
    finally:
        for _, writer in conns:
            writer.close()
    return latencies, time.perf_counter() - start


async def _answers(target: Target) -> list[bytes]:
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        out = []
        for raw in target.requests:
            status, body = await _exchange(reader, writer, raw)
            if status != 200:
                raise RuntimeError(f"{target.name}: HTTP {status}: {body[:300]!r}")
            out.append(body)
        return out
    finally:
        writer.close()


def _predictions(body: bytes, kind: str) -> np.ndarray:
    if kind == "npy":
        return np.load(io.BytesIO(body), allow_pickle=False)
    return np.asarray(json.loads(body)["predictions"], dtype=np.float32)


def check_same_predictions(ours: Target, floor: Target, kind: str) -> None:
    """Both servers answer every prepared row with the same float32 bits."""
    a = asyncio.run(_answers(ours))
    b = asyncio.run(_answers(floor))
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        px, py = _predictions(x, kind), _predictions(y, kind)
        if px.shape != py.shape or px.dtype != py.dtype or px.tobytes() != py.tobytes():
            raise AssertionError(f"{kind} row {i}: fitapi {px} differs from the floor's {py}")


# -- the servers -------------------------------------------------------------------------------
def _start_floor(weights: Path, log_dir: Path) -> tuple[Process, str]:
    port = free_port()
    proc = Process(
        "floor",
        [sys.executable, "-m", "uvicorn", "bench.predict_floor:app", "--host", "127.0.0.1",
         "--port", str(port)],
        {"FLOOR_WEIGHTS": str(weights)}, log_dir,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_api(proc, base)
    return proc, base


@dataclass
class Cell:
    p50_ms: float
    p99_ms: float
    rps: float
    cpu_ms: float  # the server process's CPU time per request (user + system), all threads


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used: Linux's /proc; 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(target: Target, total: int, concurrency: int) -> Cell:
    cpu = _cpu_s(target.pid)
    latencies, wall = asyncio.run(_load(target, total, concurrency))
    cpu_ms = (_cpu_s(target.pid) - cpu) * 1e3 / len(latencies)
    ms = sorted(t * 1e3 for t in latencies)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return Cell(statistics.median(ms), p99, len(ms) / wall, cpu_ms)


Results = dict[tuple[str, int], dict[str, Cell]]  # (body, concurrency) -> {"fitapi"|"floor"}


def run(quick: bool, requests: int | None = None) -> Results:
    total = requests or (40 if quick else 1000)
    warm = 10 if quick else 200
    rng = np.random.default_rng(0)
    rows = rng.random((16 if quick else 64, 784), dtype=np.float32)
    results: Results = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = SERVER_ENV | {"DATA_DIR": str(Path(tmp) / "data")}
        api, base = start_embedded_api(env, Path(tmp))
        procs = [api]
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                created = client.post("/v1/models", json={"config": MLP, "seed": 0})
                created.raise_for_status()
                model_id = created.json()["id"]
                weights = client.get(f"/v1/models/{model_id}/weights")
                weights.raise_for_status()
            weights_path = Path(tmp) / "weights.npz"
            weights_path.write_bytes(weights.content)
            floor, floor_base = _start_floor(weights_path, Path(tmp))
            procs.append(floor)
            for kind in BODIES:
                ours = _target("fitapi", api, base, f"/v1/models/{model_id}/predict", rows, kind)
                theirs = _target("floor", floor, floor_base, "/predict", rows, kind)
                check_same_predictions(ours, theirs, kind)
                for t in (ours, theirs):
                    asyncio.run(_load(t, warm, 10))
                for i, c in enumerate(CONCURRENCY):
                    # Alternate which goes first, so that neither always follows the other.
                    order = (ours, theirs) if i % 2 == 0 else (theirs, ours)
                    cells = {t.name: _measure(t, total, c) for t in order}
                    results[(kind, c)] = cells
        finally:
            for p in procs:
                p.stop()
    return results


def _target(name: str, proc: Process, base: str, path: str, rows: np.ndarray, kind: str) -> Target:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    return Target(name, host, int(port), _raw_requests(base, path, rows, kind), proc.proc.pid)


def rows_of(results: Results) -> list[dict[str, Any]]:
    """The goals' rows, in the shape bench/run_all.py tabulates."""
    out: list[dict[str, Any]] = []
    for kind in BODIES:
        one = results[(kind, 1)]
        ours, floor = one["fitapi"], one["floor"]
        out.append({
            "benchmark": f"bench_predict, {kind} body, one row, concurrency 1, p50",
            "ours": f"{ours.p50_ms:.2f} ms", "reference": f"minimal endpoint {floor.p50_ms:.2f} ms",
            "ratio": ours.p50_ms / floor.p50_ms, "goal": "<= 1.5x",
        })  # fmt: skip
        for c, goal in ((10, ">= 0.7x"), (50, "reported")):
            ours, floor = results[(kind, c)]["fitapi"], results[(kind, c)]["floor"]
            out.append({
                "benchmark": f"bench_predict, {kind} body, one row, concurrency {c}, throughput",
                "ours": f"{ours.rps:.0f} req/s",
                "reference": f"minimal endpoint {floor.rps:.0f} req/s",
                "ratio": ours.rps / floor.rps, "goal": goal,
            })  # fmt: skip
    return out


def measure(quick: bool) -> list[dict[str, Any]]:
    return rows_of(run(quick))


def print_table(results: Results) -> None:
    print("latency in ms; cpu: the server's CPU ms per request")
    print("body  conc | fitapi p50    p99  req/s   cpu | floor p50    p99  req/s   cpu "
          "| p50 x req/s x  cpu x")  # fmt: skip
    for (kind, c), cells in results.items():
        a, b = cells["fitapi"], cells["floor"]
        print(f"{kind:<5} {c:>4} | {a.p50_ms:10.2f} {a.p99_ms:6.2f} {a.rps:6.0f} {a.cpu_ms:5.2f} | "
              f"{b.p50_ms:9.2f} {b.p99_ms:6.2f} {b.rps:6.0f} {b.cpu_ms:5.2f} | "
              f"{a.p50_ms / b.p50_ms:5.2f} {a.rps / b.rps:7.2f} "
              f"{a.cpu_ms / max(b.cpu_ms, 1e-9):6.2f}")  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few requests: a smoke run")
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per concurrency and server (default 1000)")  # fmt: skip
    args = parser.parse_args(argv)
    results = run(args.quick, args.requests)
    print_table(results)
    rows = rows_of(results)
    print()
    for r in rows:
        print(f"{r['benchmark']}: {r['ours']} vs {r['reference']}: "
              f"{r['ratio']:.2f}x (goal {r['goal']})")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
