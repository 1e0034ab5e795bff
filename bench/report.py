"""What every benchmark hands the one-command run (`python -m bench.run_all`): rows of a table
(ours beside a reference measured in the same run, their ratio and the goal it is held to), the
machine they were measured on, and a scratch PostgreSQL database for the distributed runs."""

from __future__ import annotations

import os
import platform
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NotRequired, TypedDict

import torch

# The servers of the distributed runs: BENCH_*, else the test suite's, else the local ones.
PG_ADMIN_URL = (os.environ.get("BENCH_PG_ADMIN_URL") or os.environ.get("TEST_POSTGRES_URL")
                or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")  # fmt: skip
REDIS_URL = (os.environ.get("BENCH_REDIS_URL") or os.environ.get("TEST_REDIS_URL")
             or "redis://127.0.0.1:6379/0")  # fmt: skip


class Row(TypedDict):
    """One line of the table. `ratio` is ours over the reference as the goal reads it (a
    throughput ratio, or a time ratio when the goal is `<=`); None where there is no goal."""

    benchmark: str
    ours: str
    reference: str
    ratio: float | None
    goal: str
    note: NotRequired[str]


def verdict(row: Row) -> str:
    """`met`, `missed` or empty, from the goal (`>= 0.95x`, `<= 1.3x`) and the ratio."""
    match = re.fullmatch(r"\s*([<>]=)\s*([0-9.]+)x?\s*", row["goal"])
    if match is None or row["ratio"] is None:
        return ""
    op, bound = match.group(1), float(match.group(2))
    ok = row["ratio"] >= bound if op == ">=" else row["ratio"] <= bound
    return "met" if ok else "missed"


def markdown(rows: list[Row]) -> str:
    lines = ["| benchmark | ours | reference | ratio | goal | |", "|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"| {r['benchmark']} | {r['ours']} | {r['reference']} | {ratio} | "
                     f"{r['goal']} | {verdict(r)} |")  # fmt: skip
    notes = [f"- {r['benchmark']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(lines + (["", *notes] if notes else []))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """The machine in one line: CPU model and cores, memory, GPU if any, torch and Python."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        memory = f", {mem:.0f} GiB memory"
    except (ValueError, OSError, AttributeError):
        memory = ""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{_cpu_model()}, {cores} cores{memory}, {gpu}; torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")  # fmt: skip


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new, migrated PostgreSQL database (on BENCH_PG_ADMIN_URL's server), dropped after."""
    from sqlalchemy import create_engine, text

    from app.db.migrate import upgrade_head

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"fitapi_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        upgrade_head(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def services_up() -> bool:
    """Whether the PostgreSQL and Redis of the distributed runs answer."""
    import redis
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception:
        return False
    return True
