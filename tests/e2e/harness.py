"""Real processes for end-to-end tests: uvicorn serving the API and a Celery worker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[2]


T = TypeVar("T")


def poll(check: Callable[[], T | None], what: str, timeout: float = 60.0, every: float = 0.05) -> T:
    """Call `check` until it returns something other than None/False; a timeout is a failure
    to wait for something, not a performance assertion."""
    for _ in range(max(1, int(timeout / every))):
        result = check()
        if result is not None and result is not False:
            return result
        time.sleep(every)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    def __init__(self, name: str, cmd: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("wb")
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig_timeout: float = 10.0) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(sig_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def spawn_api(env: Mapping[str, str], log_dir: Path) -> tuple[Process, str]:
    """uvicorn started, not yet waited for (wait_api): other processes can start meanwhile."""
    port = free_port()
    proc = Process(
        "api",
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
         "--port", str(port)],
        env, log_dir,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def wait_api(proc: Process, base: str) -> None:
    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"uvicorn exited:\n{proc.output()}")
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        poll(ready, "uvicorn start-up", every=0.2)
    except TimeoutError:
        proc.stop()
        raise RuntimeError(f"uvicorn did not become ready:\n{proc.output()}") from None


def start_api(env: Mapping[str, str], log_dir: Path) -> tuple[Process, str]:
    proc, base = spawn_api(env, log_dir)
    wait_api(proc, base)
    return proc, base


def start_embedded_api(env: Mapping[str, str], log_dir: Path) -> tuple[Process, str]:
    """uvicorn on the embedded default (SQLite, in-process jobs): the server process must not
    inherit a DATABASE_URL or REDIS_URL from the test's environment."""
    saved = {k: os.environ.pop(k) for k in ("DATABASE_URL", "REDIS_URL") if k in os.environ}
    try:
        return start_api(env, log_dir)
    finally:
        os.environ.update(saved)


def spawn_worker(env: Mapping[str, str], log_dir: Path, name: str = "worker") -> Process:
    """A Celery worker started, not yet waited for (wait_worker)."""
    queue = env["CELERY_QUEUE"]
    return Process(
        name,
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", queue,
         "--pool=solo", "--loglevel=INFO", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "-n", f"{name}-{os.getpid()}@%h"],
        env, log_dir,
    )  # fmt: skip


def wait_worker(proc: Process) -> None:
    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"celery worker exited:\n{proc.output()}")
        return "ready." in proc.output()

    try:
        poll(ready, "celery worker start-up", every=0.2)
    except TimeoutError:
        proc.stop()
        raise RuntimeError(f"celery worker did not become ready:\n{proc.output()}") from None


def start_worker(env: Mapping[str, str], log_dir: Path, name: str = "worker") -> Process:
    proc = spawn_worker(env, log_dir, name)
    wait_worker(proc)
    return proc


def start_api_and_workers(
    env: Mapping[str, str], log_dir: Path, workers: Sequence[tuple[str, Mapping[str, str]]]
) -> tuple[Process, str, list[Process]]:
    """uvicorn and Celery workers (name, extra environment) started side by side, then each
    waited for: a start-up is mostly imports, so starting them one after another only waits
    longer. Should one fail, all are stopped."""
    api, base = spawn_api(env, log_dir)
    started = [spawn_worker({**env, **extra}, log_dir, name) for name, extra in workers]
    try:
        wait_api(api, base)
        for proc in started:
            wait_worker(proc)
    except BaseException:
        for proc in [*started, api]:
            proc.stop()
        raise
    return api, base, started


def sse_events(client: httpx.Client, url: str, headers: Mapping[str, str] | None = None,
               timeout: float = 120.0) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Parse a Server-Sent Events stream into {"id", "event", "data"} dicts."""
    with client.stream("GET", url, headers=dict(headers or {}), timeout=timeout) as response:
        response.raise_for_status()
        event: dict[str, Any] = {}
        for line in response.iter_lines():
            if line == "":
                if "data" in event:
                    event["data"] = json.loads(event["data"])
                    yield event
                event = {}
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(":")
                event[field] = value.removeprefix(" ")
