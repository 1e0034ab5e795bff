"""Scale figures of the distributed stack (uvicorn, Celery workers, PostgreSQL, Redis), each in a
scratch database of its own that is dropped at the end:

- queue: many small fit jobs (the scenario's model, a few epochs) submitted over HTTP and run by
  two Celery worker processes: all must succeed; total wall time, jobs/s, wall time per job
  beside one such fit in the engine alone in this process, and the database rows written per
  epoch (pg_stat_user_tables deltas, read once every process has disconnected).
- rows: the cost of committing one epoch row (`repository.record_epochs`, as the runner's epoch
  writer calls it: one transaction on a kept connection) with few and with many epoch rows
  already stored (filler jobs and rows inserted with SQL into the migrated schema); the ratio
  should be about 1.0. EXPLAIN of every statement on the write path, and of the stream's reads.
- sse: many concurrent Server-Sent Events listeners on one fit job (distributed API: Redis
  progress, one Celery worker): every listener must get every epoch event; the API process's
  CPU time over the stream per event delivered to one listener.

    python -m bench.bench_scale [--quick] [--jobs N] [--listeners N] [--only queue,rows,sse]

Needs PostgreSQL (BENCH_PG_ADMIN_URL, whose server gets the scratch databases) and Redis
(BENCH_REDIS_URL; a Celery queue of the run's own), both defaulting to the local ones
(bench/report.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
from sqlalchemy import Engine, create_engine, event, text

from bench.report import REDIS_URL, scratch_database
from tests.e2e.harness import Process, start_api_and_workers
from tests.support import scenario

PARTS = ("queue", "rows", "sse")
Row = dict[str, Any]


# --- shared ----------------------------------------------------------------------------------


def service_env(url: str, tmp: Path) -> dict[str, str]:
    """The distributed stack's environment: this run's database, queue and files; the quotas
    that would refuse a thousand models and queued jobs of one project are lifted."""
    return {
        "DATABASE_URL": url,
        "REDIS_URL": REDIS_URL,
        "CELERY_QUEUE": f"fitapi-bench-scale-{uuid.uuid4().hex[:8]}",
        "DATA_DIR": str(tmp / "data"),
        "QUOTA_MODELS": "1000000",
        "QUOTA_QUEUED_JOBS": "1000000",
        "QUOTA_REQUESTS_PER_S": "0",
    }


@contextlib.contextmanager
def stack(url: str, workers: int) -> Iterator[tuple[Process, str, list[Process]]]:
    with tempfile.TemporaryDirectory() as tmp:
        env = service_env(url, Path(tmp))
        names: list[tuple[str, dict[str, str]]] = [(f"worker{i}", {}) for i in range(workers)]
        api, base, procs = start_api_and_workers(env, Path(tmp), names)
        try:
            yield api, base, procs
        finally:
            for p in [api, *procs]:
                p.stop()


def wait_disconnected(engine: Engine, timeout: float = 30.0) -> None:
    """Until no other session is connected to this database: a backend flushes its table
    statistics as it exits, so the pg_stat views are complete after this."""
    name = engine.url.database
    until = time.monotonic() + timeout
    with engine.connect() as conn:
        while time.monotonic() < until:
            others = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity "
                     "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": name},
            ).scalar_one()  # fmt: skip
            if not others:
                return
            time.sleep(0.1)
    raise TimeoutError("the service's database sessions did not end")


def table_writes(engine: Engine) -> dict[str, tuple[int, int, int]]:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        rows = conn.execute(
            text("SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables")
        ).all()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def engine_fit_seconds(epochs: int, repeats: int = 5) -> float:
    """One small job's fit in the engine alone, in this process: the model built from its
    config, the fit planned and run (median of `repeats`, after a warm-up)."""
    import torch

    from app.engine.models.model import Model
    from app.engine.training.compile import CompileSpec
    from app.engine.training.fit_args import FitArgs
    from app.engine.training.trainer import Trainer

    def once() -> float:
        start = time.perf_counter()
        model = Model.from_config(scenario.MODEL, seed=0)
        trainer = Trainer(model, CompileSpec.parse(scenario.COMPILE), device=torch.device("cpu"))
        x, y = scenario.X, scenario.Y
        plan = trainer.plan_fit(x, y, args=FitArgs(batch_size=128, epochs=epochs, seed=0),
                                validation_data=(x, y))  # fmt: skip
        trainer.run_fit(plan)
        return time.perf_counter() - start

    once()
    return statistics.median(once() for _ in range(repeats))


# --- 1. many queued small jobs ---------------------------------------------------------------


@dataclass
class QueueResult:
    jobs: int
    epochs: int
    workers: int
    submit_s: float
    wall_s: float
    engine_fit_s: float
    writes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    api_cpu_s: float = 0.0  # from the first submission to the last job's end
    workers_cpu_s: float = 0.0
    quarters_s: list[float] = field(default_factory=list)  # wall time of each quarter of jobs

    @property
    def per_job_s(self) -> float:
        return self.wall_s / self.jobs

    def total_writes(self) -> int:
        """Rows inserted, updated and deleted, but for the models the bench created (one a
        job, before its fit)."""
        return sum(sum(v) for v in self.writes.values()) - self.writes.get("models", (0,))[0]


def _post_all(client: httpx.Client, requests: Sequence[tuple[str, Any]], threads: int) -> list[Any]:
    def post(req: tuple[str, Any]) -> Any:
        path, body = req
        r = client.post(path, content=body, headers={"Content-Type": "application/json"})
        r.raise_for_status()
        return r.json()

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(post, requests))


def run_queue(jobs: int, epochs: int = 3, workers: int = 2, threads: int = 4) -> QueueResult:
    with scratch_database() as url:
        engine = create_engine(url)
        try:
            before = table_writes(engine)
            with stack(url, workers) as (api, base, procs):
                limits = httpx.Limits(max_connections=threads * 2)
                with httpx.Client(base_url=base, timeout=120, limits=limits) as client:
                    model_body = json.dumps({"config": scenario.MODEL, "seed": 0})
                    models = _post_all(client, [("/v1/models", model_body)] * jobs, threads)
                    fit = json.dumps(scenario.fit_body(epochs=epochs, callbacks=[], seed=0))
                    cpu0 = [cpu_seconds(p.proc.pid) for p in (api, *procs)]
                    start = time.perf_counter()
                    _post_all(client, [(f"/v1/models/{m['id']}/fit", fit) for m in models],
                              threads)  # fmt: skip
                    submitted = time.perf_counter()
                    counts: dict[str, int] = {}
                    marks = [jobs * q // 4 for q in (1, 2, 3, 4)]
                    reached: list[float] = []
                    with engine.connect() as conn:
                        while True:
                            counts = dict(conn.execute(
                                text("SELECT status, count(*) FROM jobs GROUP BY status")
                            ).all())  # fmt: skip
                            conn.commit()
                            now = time.perf_counter()
                            while (
                                len(reached) < 4
                                and counts.get("succeeded", 0) >= marks[len(reached)]
                            ):
                                reached.append(now - start)
                            if not counts.get("queued") and not counts.get("running"):
                                break
                            time.sleep(0.2)  # light polling of the database, not of the API
                    end = time.perf_counter()
                    cpu = [cpu_seconds(p.proc.pid) - c for p, c in zip((api, *procs), cpu0,
                                                                         strict=True)]  # fmt: skip
            assert counts == {"succeeded": jobs}, counts
            wait_disconnected(engine)
            after = table_writes(engine)
        finally:
            engine.dispose()
    writes = {}
    for table, (ins, upd, dele) in after.items():
        b = before.get(table, (0, 0, 0))
        delta = (ins - b[0], upd - b[1], dele - b[2])
        if any(delta):
            writes[table] = delta
    quarters = [b - a for a, b in zip([0.0, *reached], reached, strict=False)]
    return QueueResult(jobs, epochs, workers, submitted - start, end - start,
                       engine_fit_seconds(epochs), writes, cpu[0], sum(cpu[1:]),
                       quarters)  # fmt: skip


# --- 2. the epoch row's write cost with many rows stored -------------------------------------

FILLER_EPOCHS = 10  # epoch rows per filler job: 10k rows are 1,000 jobs
LOGS = {"loss": 0.25, "accuracy": 0.875, "val_loss": 0.25, "val_accuracy": 0.875}


def _fill(engine: Engine, model_id: uuid.UUID, jobs: int) -> None:
    """`jobs` finished jobs of FILLER_EPOCHS epoch rows each, straight into the tables."""
    from app.db.models import DEFAULT_PROJECT_ID

    tag = f"filler-{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO jobs (id, model_id, project_id, kind, status, attempt, max_attempts, "
            "cancel_requested, request, data_key, inputs_bytes, epochs, epochs_done, "
            "created_at, dispatched_at, updated_at) "
            "SELECT gen_random_uuid(), :model, :project, 'fit', 'succeeded', 1, 3, false, "
            "'{}', :tag, 0, :epochs, :epochs, now(), now(), now() "
            "FROM generate_series(1, :n)"
        ), {"model": model_id, "project": DEFAULT_PROJECT_ID, "tag": tag, "epochs": FILLER_EPOCHS,
            "n": jobs})  # fmt: skip
        conn.execute(text(
            "INSERT INTO epoch_logs (job_id, epoch, logs, attempt, created_at) "
            "SELECT j.id, e, CAST(:logs AS json), 1, now() "
            "FROM jobs j CROSS JOIN generate_series(0, :last) e WHERE j.data_key = :tag"
        ), {"logs": json.dumps(LOGS), "last": FILLER_EPOCHS - 1, "tag": tag})  # fmt: skip
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE jobs, epoch_logs"))


def _model(engine: Engine) -> uuid.UUID:
    from sqlalchemy.orm import Session

    from app.db.models import DEFAULT_PROJECT_ID, ModelRow

    with Session(engine) as session:
        model = ModelRow(project_id=DEFAULT_PROJECT_ID, name="bench", config=scenario.MODEL,
                         seed=0, summary={})  # fmt: skip
        session.add(model)
        session.commit()
        return model.id


def _running_job(engine: Engine, epochs: int) -> uuid.UUID:
    """A running job (attempt 1) of a new model, as a worker's claim leaves it."""
    from app.db.models import DEFAULT_PROJECT_ID

    job_id, model_id = uuid.uuid4(), _model(engine)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO jobs (id, model_id, project_id, kind, status, attempt, max_attempts, "
            "cancel_requested, request, data_key, inputs_bytes, epochs, epochs_done, "
            "created_at, dispatched_at, updated_at, started_at) "
            "VALUES (:id, :model, :project, 'fit', 'running', 1, 3, false, '{}', 'bench', 0, "
            ":epochs, 0, now(), now(), now(), now())"
        ), {"id": job_id, "model": model_id, "project": DEFAULT_PROJECT_ID,
            "epochs": epochs})  # fmt: skip
    return job_id


class EpochWrites:
    """A running job's epochs committed one at a time, as the epoch writer commits them: one
    transaction each on a connection kept for the whole fit."""

    def __init__(self, engine: Engine, epochs: int) -> None:
        self.job_id = _running_job(engine, epochs)
        self.conn = engine.connect()
        self.epoch = 0

    def write(self, count: int) -> list[float]:
        from sqlalchemy.orm import Session

        from app.db.session import unit_of_work
        from app.jobs import repository as repo

        times = []
        for _ in range(count):
            start = time.perf_counter()
            with unit_of_work(lambda: Session(bind=self.conn)) as session:
                ok = repo.record_epochs(session, job_id=self.job_id, attempt=1,
                                        rows=[(self.epoch, LOGS)],
                                        first_of_attempt=self.epoch == 0)  # fmt: skip
            times.append(time.perf_counter() - start)
            assert ok
            self.epoch += 1
        return times

    def close(self) -> None:
        self.conn.close()


@dataclass
class Explained:
    statement: str
    plan: str

    def seq_scans(self, tables: Sequence[str]) -> list[str]:
        return [t for t in tables if f"Seq Scan on {t}" in self.plan]


def _capture(engine: Engine, call: Callable[[], object]) -> list[tuple[str, Any]]:
    """The statements (and parameters) `call` sends to the database."""
    seen: list[tuple[str, Any]] = []

    def listen(
        _conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool
    ) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE")):
            seen.append((statement, params[0] if many else params))

    event.listen(engine, "before_cursor_execute", listen)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    return seen


def explain_write_path(engine: Engine) -> list[Explained]:
    """EXPLAIN of what one epoch's commit runs (the first of an attempt, with its DELETE) and
    what a stream's poll reads, on the current tables; nothing is kept."""
    from sqlalchemy.orm import Session

    from app.db.scope import SYSTEM
    from app.db.session import unit_of_work
    from app.jobs import events
    from app.jobs import repository as repo
    from app.runtime.context import AppContext

    job_id = _running_job(engine, 10)

    def write() -> None:
        with engine.connect() as conn, unit_of_work(lambda: Session(bind=conn)) as session:
            repo.record_epochs(session, job_id=job_id, attempt=1, rows=[(0, LOGS)],
                               first_of_attempt=True)  # fmt: skip

    def read() -> None:
        from sqlalchemy.orm import sessionmaker

        # Only what events._read uses of a context: its sessions.
        ctx = SimpleNamespace(sessions=sessionmaker(engine, expire_on_commit=False))
        events._read(cast(AppContext, ctx), SYSTEM, job_id, events._Cursor(-1))

    statements = _capture(engine, write) + _capture(engine, read)
    out = []
    with engine.connect() as conn:
        for statement, params in statements:
            plan = conn.exec_driver_sql("EXPLAIN " + statement, params).scalars().all()
            out.append(Explained(" ".join(statement.split())[:110], "\n".join(plan)))
        conn.rollback()
    return out


@dataclass
class RowsResult:
    sizes: list[int]
    medians_ms: list[float]
    p90s_ms: list[float]
    writes: int
    plans: list[Explained]
    # Median ms of the quota checks, at each size: a submission's (project_usage) and a
    # worker claim's (running_jobs).
    usage_ms: list[float] = field(default_factory=list)
    running_ms: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.medians_ms[-1] / self.medians_ms[0]


def run_rows(sizes: Sequence[int], writes: int, block: int = 20) -> RowsResult:
    """One database per size, filled first; then the writes alternate between them in blocks
    of `block`, so the machine's drifting load falls on every size alike."""
    from app.db.session import make_engine

    with contextlib.ExitStack() as stack_:
        engines = []
        for size in sizes:
            engine = make_engine(stack_.enter_context(scratch_database()))
            stack_.callback(engine.dispose)
            _fill(engine, _model(engine), size // FILLER_EPOCHS)
            engines.append(engine)
        writers = [EpochWrites(e, writes + block) for e in engines]
        for w in writers:
            stack_.callback(w.close)
            w.write(block)  # warm the connection and the statements
        times: list[list[float]] = [[] for _ in sizes]
        for _ in range(0, writes, block):
            for w, t in zip(writers, times, strict=True):
                t += w.write(block)
        plans = explain_write_path(engines[-1])
        usage = [_quota_check_ms(e, running=False) for e in engines]
        running = [_quota_check_ms(e, running=True) for e in engines]
    medians = [statistics.median(t) * 1e3 for t in times]
    p90s = [sorted(t)[int(len(t) * 0.9)] * 1e3 for t in times]
    return RowsResult(list(sizes), medians, p90s, writes, plans, usage, running)


def _quota_check_ms(engine: Engine, running: bool, repeats: int = 50) -> float:
    """Median ms of the project's usage as a submission reads it (or of its running jobs
    alone, as a worker's claim does), in its own transaction."""
    from sqlalchemy.orm import Session

    from app.db.models import DEFAULT_PROJECT_ID
    from app.db.usage import project_usage, running_jobs

    times = []
    with Session(engine) as session:
        for _ in range(repeats + 5):
            start = time.perf_counter()
            if running:
                running_jobs(session, project_id=DEFAULT_PROJECT_ID)
            else:
                project_usage(session, project_id=DEFAULT_PROJECT_ID)
            session.rollback()
            times.append(time.perf_counter() - start)
    return statistics.median(times[5:]) * 1e3


# --- 3. many listeners on one job's event stream ---------------------------------------------


@dataclass
class Listened:
    epochs: set[int] = field(default_factory=set)
    epoch_events: int = 0
    progress: int = 0
    status: dict[str, Any] | None = None


async def _listen(client: httpx.AsyncClient, job_id: str, connected: asyncio.Event,
                  counter: list[int], total: int) -> Listened:  # fmt: skip
    got = Listened()
    async with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        response.raise_for_status()
        counter[0] += 1
        if counter[0] == total:
            connected.set()
        kind, data = "", ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif line == "" and kind:
                payload = json.loads(data)
                if kind == "epoch":
                    got.epochs.add(int(payload["epoch"]))
                    got.epoch_events += 1
                elif kind == "progress":
                    got.progress += 1
                elif kind == "status":
                    got.status = payload
                    break
                kind, data = "", ""
    return got


@dataclass
class SseResult:
    listeners: int
    epochs: int
    duration_s: float
    api_cpu_s: float
    epoch_events: int
    progress_events: int
    connect_s: float
    db_commits: int

    @property
    def events(self) -> int:
        return self.epoch_events + self.progress_events

    @property
    def cpu_per_event_us(self) -> float:
        return self.api_cpu_s / self.events * 1e6


async def _stream_all(base: str, job_id: str, listeners: int) -> tuple[list[Listened], float]:
    limits = httpx.Limits(max_connections=listeners + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(600, connect=60),
                                 limits=limits) as client:  # fmt: skip
        connected, counter = asyncio.Event(), [0]
        start = time.perf_counter()
        tasks = [asyncio.create_task(_listen(client, job_id, connected, counter, listeners))
                 for _ in range(listeners)]  # fmt: skip
        await connected.wait()
        connect_s = time.perf_counter() - start
        return list(await asyncio.gather(*tasks)), connect_s


def _db_commits(engine: Engine) -> int:
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        return int(conn.execute(
            text("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        ).scalar_one())  # fmt: skip


def run_sse(listeners: int, epochs: int) -> SseResult:
    """A fit of `epochs` epochs (batches of 8: 63 a epoch, so an epoch takes a few tens of
    milliseconds and progress events flow) and `listeners` streams opened as it is queued."""
    with scratch_database() as url:
        engine = create_engine(url)
        try:
            with (
                stack(url, 1) as (api, base, _),
                httpx.Client(base_url=base, timeout=120) as client,
            ):
                model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 0})
                model.raise_for_status()
                body = scenario.fit_body(epochs=epochs, callbacks=[], seed=0, batch_size=8)
                job = client.post(f"/v1/models/{model.json()['id']}/fit", json=body)
                job.raise_for_status()
                cpu0 = cpu_seconds(api.proc.pid)
                start = time.perf_counter()
                got, connect_s = asyncio.run(_stream_all(base, job.json()["id"], listeners))
                duration = time.perf_counter() - start
                cpu = cpu_seconds(api.proc.pid) - cpu0
            wait_disconnected(engine)
            commits = _db_commits(engine)
        finally:
            engine.dispose()
    for g in got:
        assert g.status is not None and g.status["status"] == "succeeded", g.status
        assert g.epochs == set(range(epochs)), sorted(set(range(epochs)) - g.epochs)[:5]
    return SseResult(listeners, epochs, duration, cpu, sum(g.epoch_events for g in got),
                     sum(g.progress for g in got), connect_s, commits)  # fmt: skip


# --- the table -------------------------------------------------------------------------------


@dataclass
class Sizes:
    jobs: int
    rows: tuple[int, int]
    writes: int
    listeners: int
    sse_epochs: int


def sizes(quick: bool, jobs: int | None = None, listeners: int | None = None) -> Sizes:
    s = Sizes(50, (2_000, 10_000), 100, 20, 60) if quick else Sizes(
        1000, (10_000, 100_000), 400, 200, 300)  # fmt: skip
    if jobs is not None:
        s.jobs = jobs
    if listeners is not None:
        s.listeners = listeners
    return s


def queue_rows(r: QueueResult) -> list[Row]:
    epochs = r.jobs * r.epochs
    epoch_rows = r.writes.get("epoch_logs", (0, 0, 0))[0]
    return [
        {"benchmark": f"bench_scale queue: {r.jobs} small jobs ({r.epochs} epochs) over "
                      f"{r.workers} Celery workers, all succeeded",
         "ours": f"{r.wall_s:.1f} s, {r.jobs / r.wall_s:.1f} jobs/s, "
                 f"{r.per_job_s * 1e3:.0f} ms/job",
         "reference": f"one such fit in the engine alone: {r.engine_fit_s * 1e3:.0f} ms",
         "ratio": r.per_job_s / r.engine_fit_s,
         "goal": "all succeed; wall per job reported beside the engine's fit"},
        {"benchmark": "bench_scale queue: database rows written (inserted + updated + deleted) "
                      "per epoch",
         "ours": f"{r.total_writes() / epochs:.1f} rows/epoch "
                 f"({epoch_rows / epochs:.2f} epoch rows)",
         "reference": f"{r.total_writes() / r.jobs:.1f} rows/job over {r.epochs} epochs",
         "ratio": None,
         "goal": "one epoch row per epoch, a few rows per job"},
    ]  # fmt: skip


def rows_rows(r: RowsResult) -> list[Row]:
    seq = sorted({t for p in r.plans for t in p.seq_scans(["jobs", "epoch_logs"])})
    return [
        {"benchmark": f"bench_scale rows: commit of one epoch row, median of {r.writes}",
         "ours": f"{r.medians_ms[-1]:.2f} ms with {r.sizes[-1]:,} rows stored",
         "reference": f"{r.medians_ms[0]:.2f} ms with {r.sizes[0]:,} rows stored",
         "ratio": r.ratio,
         "goal": "about 1.0 (flat)"},
        {"benchmark": "bench_scale rows: EXPLAIN of the write path and the stream's reads",
         "ours": "sequential scans of " + ", ".join(seq) if seq else "index scans only",
         "reference": f"{len(r.plans)} statements",
         "ratio": None,
         "goal": "no sequential scan of jobs or epoch_logs"},
    ]  # fmt: skip


def sse_rows(r: SseResult) -> list[Row]:
    return [
        {"benchmark": f"bench_scale sse: {r.listeners} listeners on one job ({r.epochs} "
                      "epochs), distributed API, every listener got every epoch",
         "ours": f"{r.cpu_per_event_us:.0f} us API CPU per event per listener",
         "reference": f"{r.api_cpu_s:.1f} s API CPU over {r.duration_s:.1f} s, "
                      f"{r.events:,} events ({r.epoch_events:,} epoch)",
         "ratio": None,
         "goal": "every event to every listener; CPU per event reported"},
    ]  # fmt: skip


def print_queue(r: QueueResult) -> None:
    epochs = r.jobs * r.epochs
    print(f"queue: {r.jobs} jobs x {r.epochs} epochs over {r.workers} workers, all succeeded")
    print(f"  submitted in {r.submit_s:.1f} s; all finished after {r.wall_s:.1f} s "
          f"({r.jobs / r.wall_s:.1f} jobs/s, {r.per_job_s * 1e3:.0f} ms/job wall, "
          f"{r.per_job_s * r.workers * 1e3:.0f} ms/job per worker)")  # fmt: skip
    print(f"  CPU a job: API {r.api_cpu_s / r.jobs * 1e3:.0f} ms, workers "
          f"{r.workers_cpu_s / r.jobs * 1e3:.0f} ms; wall time of each quarter of the jobs: "
          + ", ".join(f"{q:.1f} s" for q in r.quarters_s))  # fmt: skip
    print(
        f"  one such fit in the engine alone: {r.engine_fit_s * 1e3:.1f} ms "
        f"(wall per job / engine: {r.per_job_s / r.engine_fit_s:.1f}x)"
    )
    total = r.total_writes()
    print(
        f"  rows written but the models' creation: {total} ({total / r.jobs:.1f} a job, "
        f"{total / epochs:.1f} an epoch); by table, inserted/updated/deleted a job:"
    )
    for table, (ins, upd, dele) in sorted(r.writes.items()):
        print(f"    {table:20s} {ins / r.jobs:6.2f} {upd / r.jobs:6.2f} {dele / r.jobs:6.2f}")


def print_rows(r: RowsResult) -> None:
    print(f"rows: commit of one epoch row (record_epochs, one transaction), {r.writes} writes")
    for size, med, p90 in zip(r.sizes, r.medians_ms, r.p90s_ms, strict=True):
        print(f"  {size:>8,} epoch rows stored: median {med:.3f} ms, p90 {p90:.3f} ms")
    print(f"  ratio {r.sizes[-1]:,} / {r.sizes[0]:,}: {r.ratio:.2f}x")
    for size, usage, running in zip(r.sizes, r.usage_ms, r.running_ms, strict=True):
        print(f"  {size // FILLER_EPOCHS:>8,} jobs stored: a submission's quota check "
              f"(project_usage) {usage:.3f} ms, a claim's (running_jobs) "
              f"{running:.3f} ms")  # fmt: skip
    print("  EXPLAIN (write path, then a stream's poll):")
    for p in r.plans:
        top = [line.strip() for line in p.plan.splitlines() if "Scan" in line or
               line.startswith(("Insert", "Update", "Delete"))]  # fmt: skip
        print(f"    {p.statement}")
        for line in top:
            print(f"      {line}")


def print_sse(r: SseResult) -> None:
    print(f"sse: {r.listeners} listeners, {r.epochs} epochs, distributed API (Redis progress)")
    print(
        f"  every listener got every epoch event and the final status; "
        f"{r.connect_s:.2f} s until all were connected"
    )
    print(
        f"  events delivered: {r.events:,} ({r.epoch_events:,} epoch, "
        f"{r.progress_events:,} progress) over {r.duration_s:.1f} s"
    )
    print(
        f"  API CPU: {r.api_cpu_s:.2f} s, {r.cpu_per_event_us:.0f} us per event per listener, "
        f"{r.api_cpu_s / r.duration_s * 100:.0f}% of a core"
    )
    print(f"  database commits over the run (API and worker, start-up included): {r.db_commits}")


def measure(quick: bool, *, jobs: int | None = None, listeners: int | None = None,
            only: Sequence[str] = PARTS) -> list[Row]:  # fmt: skip
    """The rows of the benchmark table (and the figures printed as each part ends)."""
    s = sizes(quick, jobs, listeners)
    rows: list[Row] = []
    if "queue" in only:
        q = run_queue(s.jobs)
        print_queue(q)
        rows += queue_rows(q)
    if "rows" in only:
        r = run_rows(s.rows, s.writes)
        print_rows(r)
        rows += rows_rows(r)
    if "sse" in only:
        e = run_sse(s.listeners, s.sse_epochs)
        print_sse(e)
        rows += sse_rows(e)
    return rows


def main(argv: Sequence[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--jobs", type=int, default=None, help="queued jobs (1000; quick 50)")
    parser.add_argument("--listeners", type=int, default=None, help="SSE clients (200; quick 20)")
    parser.add_argument("--only", default=",".join(PARTS), help="queue,rows,sse")
    args = parser.parse_args(argv)
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(only) - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {','.join(PARTS)}")
    start = time.perf_counter()
    rows = measure(args.quick, jobs=args.jobs, listeners=args.listeners, only=only)
    print("\n| benchmark | ours | reference | ratio | goal |\n|---|---|---|---|---|")
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        print(f"| {r['benchmark']} | {r['ours']} | {r['reference']} | {ratio} | {r['goal']} |")
    print(f"({time.perf_counter() - start:.0f} s)")
    return rows


if __name__ == "__main__":
    main()
