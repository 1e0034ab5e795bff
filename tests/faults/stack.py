"""Real processes for the fault tests: a uvicorn API and Celery workers on a Postgres database
and a Redis queue of their own, with settings per test, and the checks a recovered job must
pass (exact rows, and the history and weights of the same fit run without a fault)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.e2e.harness import Process, start_api_and_workers, start_worker
from tests.e2e.scenario_checks import wait_for
from tests.support import scenario

ENDED = {"succeeded", "failed", "cancelled"}


@dataclass
class Stack:
    client: httpx.Client
    env: dict[str, str]
    tmp: Path
    api: Process
    workers: list[Process] = field(default_factory=list)

    def worker(self, name: str = "worker") -> Process:
        proc = start_worker(self.env, self.tmp, name=name)
        self.workers.append(proc)
        return proc

    def fit(self, epochs: int, *, seed: int = 3, **extra: Any) -> tuple[str, str]:
        """A new model and a fit job for it: (model id, job id)."""
        model = self.client.post("/v1/models", json={"config": scenario.MODEL, "seed": seed})
        model.raise_for_status()
        body = scenario.fit_body(epochs=epochs, callbacks=[], seed=5, **extra)
        job = self.client.post(f"/v1/models/{model.json()['id']}/fit", json=body)
        job.raise_for_status()
        return model.json()["id"], job.json()["id"]

    def job(self, job_id: str) -> dict[str, Any]:
        reply: dict[str, Any] = self.client.get(f"/v1/jobs/{job_id}").json()
        return reply

    def wait(self, job_id: str, timeout: float = 180) -> dict[str, Any]:
        return wait_for(self.client, job_id, ENDED, timeout=timeout)

    def predict(self, model_id: str) -> Any:
        return self.client.post(f"/v1/models/{model_id}/predict",
                                json={"x": scenario.X.tolist()}).json()  # fmt: skip

    def assert_same_as_a_straight_run(self, model_id: str, job: dict[str, Any]) -> None:
        """Exactly one row per epoch, and the history and the model's weights (its
        predictions, bit for bit) of the same fit run without a fault."""
        epochs = job["epochs"]
        rows = self.client.get(f"/v1/jobs/{job['id']}/logs").json()["items"]
        assert [row["epoch"] for row in rows] == list(range(epochs))
        straight_model, straight_id = self.fit(epochs)
        straight = self.wait(straight_id)
        assert straight["status"] == "succeeded" and straight["attempt"] == 1, straight
        assert job["history"] == straight["history"]
        assert self.predict(model_id) == self.predict(straight_model)


@contextlib.contextmanager
def launch(
    db_url: str, redis_url: str, tmp: Path, *, workers: int = 1, data_dir: Path | None = None,
    **settings: str,
) -> Iterator[Stack]:  # fmt: skip
    env = {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "CELERY_QUEUE": f"fitapi-fault-{uuid.uuid4().hex[:8]}",
        "DATA_DIR": str(data_dir or tmp / "data"),
        "JOB_HEARTBEAT_S": "0.2",
        "JOB_LEASE_S": "3",
        "REAPER_INTERVAL_S": "0.5",
        "CHECKPOINT_EVERY_S": "0",
        **settings,
    }
    names: list[tuple[str, dict[str, str]]] = [(f"worker{i + 1}", {}) for i in range(workers)]
    api, base, started = start_api_and_workers(env, tmp, names)
    stack = None
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            stack = Stack(client, env, tmp, api, started)
            yield stack
    finally:
        for proc in stack.workers if stack else started:
            proc.stop()
        api.stop()


def sqlalchemy_to_libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def terminate_once(
    db_url: str, *, name: str, event: str, table: str, when: str, nth: int = 1
) -> None:
    """A real fault: the database ends the connection of the `nth` statement that fires this
    trigger (`event` INSERT or UPDATE on `table`, `when` its WHEN condition over NEW and OLD).
    The count is a sequence, which a rolled-back transaction does not undo, so the fault
    happens once."""
    with psycopg.connect(sqlalchemy_to_libpq(db_url), autocommit=True) as conn:
        conn.execute(f"CREATE SEQUENCE fault_{name}")
        conn.execute(f"""
            CREATE FUNCTION fault_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('fault_{name}') = {nth} THEN
                    PERFORM pg_terminate_backend(pg_backend_pid());
                END IF;
                RETURN NEW;
            END $$""")  # fmt: skip
        conn.execute(f"CREATE TRIGGER fault_{name} BEFORE {event} ON {table} "
                     f"FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION fault_{name}()")  # fmt: skip


def fired(db_url: str, name: str) -> int:
    with psycopg.connect(sqlalchemy_to_libpq(db_url), autocommit=True) as conn:
        row = conn.execute(f"SELECT last_value, is_called FROM fault_{name}").fetchone()
        assert row is not None
        return int(row[0]) if row[1] else 0
