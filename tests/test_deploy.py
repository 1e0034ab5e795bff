"""What can be checked of the container files without a Docker engine: the compose file parses,
has the services the README describes, sets only settings that exist, and runs commands and
modules that exist; the image copies everything the services need."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

from app.core.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "worker"}
    fields = {name.upper() for name in Settings.model_fields}
    for name in ("migrate", "api", "worker"):
        env = services[name]["environment"]
        assert set(env) <= fields, set(env) - fields
        assert env["MIGRATE_ON_START"] == "false"
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    worker = services["worker"]["command"]
    assert worker[:3] == ["celery", "-A", "workers.celery_app"]
    assert importlib.util.find_spec("workers.celery_app") is not None
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "WORKER_GPUS" in str(gpu["count"])


def test_dockerfile_copies_what_the_services_run() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for path in ("pyproject.toml", "alembic.ini", "app", "workers", "migrations"):
        assert path in text, path
        assert (ROOT / path).exists()
    assert "app.main:app" in text
