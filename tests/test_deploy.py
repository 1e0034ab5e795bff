"""The container files. Without a Docker engine: the compose files parse, have the services the
docs describe, set only settings that exist, run commands and modules that exist, keep
credentials out of the files, give every long-running service a restart policy and a health
check, and reserve GPUs only in the GPU override; the image installs its dependencies before it
copies the code. Where Docker Compose is installed, `docker compose config` accepts both files;
where a Docker engine runs, the CPU image builds. Docker is not a required service: those two
skip without it, in CI too."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.core.config import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE, GPU = ROOT / "docker-compose.yml", ROOT / "docker-compose.gpu.yml"
APP_SERVICES = ("migrate", "api", "worker")
LONG_RUNNING = ("postgres", "redis", "api", "worker")
SUBSTITUTION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _load(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _walk(node: Any) -> list[tuple[str, Any]]:
    """Every (key, value) pair of a parsed YAML document, at any depth."""
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in [(str(k), v), *_walk(v)]]
    if isinstance(node, list):
        return [pair for item in node for pair in _walk(item)]
    return []


def test_compose_file() -> None:
    services = _load(COMPOSE)["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker"}
    fields = {name.upper() for name in Settings.model_fields}
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert set(env) <= fields, set(env) - fields
        assert env["MIGRATE_ON_START"] == "false"
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    worker = services["worker"]["command"]
    assert worker[:3] == ["celery", "-A", "workers.celery_app"]
    assert importlib.util.find_spec("workers.celery_app") is not None
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_the_default_stack_runs_on_any_host() -> None:
    # No device request at all: a reservation of zero devices is still sent to the engine,
    # which refuses it on hosts without the NVIDIA toolkit.
    for key, value in _walk(_load(COMPOSE)):
        assert key not in ("devices", "device_requests", "runtime", "gpus"), key
        assert "nvidia" not in str(value).lower() or key == "command", (key, value)
    args = _load(COMPOSE)["x-app"]["build"]["args"]
    assert args["TORCH_VARIANT"] == "${TORCH_VARIANT:-cpu}"


def test_the_gpu_override_reserves_gpus_and_builds_a_cuda_torch() -> None:
    worker = _load(GPU)["services"]["worker"]
    assert set(_load(GPU)["services"]) == {"worker"}
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["count"] == "${WORKER_GPUS:-1}"
    variant = worker["build"]["args"]["TORCH_VARIANT"]
    default = SUBSTITUTION.fullmatch(variant)
    assert default is not None and re.fullmatch(r"cu\d+", default.group(2) or ""), variant
    assert worker["image"] != _load(COMPOSE)["services"]["worker"]["image"]


def test_long_running_services_restart_and_report_health() -> None:
    services = _load(COMPOSE)["services"]
    for name in LONG_RUNNING:
        assert services[name]["restart"] == "unless-stopped", name
        check = services[name]["healthcheck"]
        assert not check.get("disable") and check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["worker"]["healthcheck"]["test"][-2:] == ["-m", "workers.health"]
    assert importlib.util.find_spec("workers.health") is not None
    # A one-shot job: neither restarted nor checked (the image's check is the API's).
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["healthcheck"] == {"disable": True}


def test_no_credential_is_written_in_the_compose_files() -> None:
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for path in (COMPOSE, GPU):
        text = path.read_text()
        for key, value in _walk(_load(path)):
            if re.search(r"PASSWORD|SECRET|TOKEN", key) and isinstance(value, str):
                assert SUBSTITUTION.fullmatch(value), (path.name, key, value)
            if isinstance(value, str):  # a URL's password, once substitutions are taken out
                bare = SUBSTITUTION.sub("", value)
                assert not re.search(r"://[^@/\s]*:[^@/\s]+@", bare), (path.name, key, value)
        # Every variable is documented in .env.example, with the default the file uses.
        for name, default in SUBSTITUTION.findall(text):
            assert name in example, (path.name, name)
            assert example[name] == default, (path.name, name, default)


def test_dockerfile_installs_dependencies_before_the_code() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for path in ("pyproject.toml", "alembic.ini", "app", "workers", "migrations"):
        assert re.search(rf"^COPY {path} ", text, re.M), path
        assert (ROOT / path).exists()
    assert "app.main:app" in text
    lines = text.splitlines()

    def first(pattern: str) -> int:
        return next(i for i, line in enumerate(lines) if re.search(pattern, line))

    code = min(first(r"^COPY app "), first(r"^COPY workers "))
    assert first(r"^COPY pyproject.toml ") < first(r"pip install -r ") < code
    assert first(r"pip install --no-deps \.") > code
    assert first(r"^ARG TORCH_VARIANT=cpu$") < first(
        r"download.pytorch.org/whl/\$\{TORCH_VARIANT\}"
    )
    assert re.search(r"^HEALTHCHECK .*urllib.request.*/healthz", text, re.M | re.S)
    # python:3.11-slim has no curl or wget: the check uses the standard library.
    assert not re.search(r"^\s*(HEALTHCHECK|CMD).*\b(curl|wget)\b", text, re.M)


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".git", ".venv", "data", "tests", ".env", "**/__pycache__", ".pytest_cache"):
        assert entry in ignored, entry
    for needed in ("app", "workers", "migrations", "pyproject.toml", "alembic.ini"):
        assert needed not in ignored


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def _compose_available() -> bool:
    return shutil.which("docker") is not None and _docker("compose", "version").returncode == 0


@pytest.mark.parametrize("files", [["docker-compose.yml"],
                                   ["docker-compose.yml", "docker-compose.gpu.yml"]])  # fmt: skip
def test_docker_compose_accepts_the_files(files: list[str]) -> None:
    if not _compose_available():
        pytest.skip("Docker Compose is not installed")
    flags = [arg for name in files for arg in ("-f", name)]
    done = _docker("compose", *flags, "config", "--quiet")
    assert done.returncode == 0, done.stderr


def test_the_cpu_image_builds() -> None:
    if shutil.which("docker") is None or _docker("info").returncode != 0:
        pytest.skip("no Docker engine")
    done = _docker("build", "--build-arg", "TORCH_VARIANT=cpu", "-t", "fitapi:test-build", ".",
                   timeout=1800)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
