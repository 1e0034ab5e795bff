"""The one Settings object: the only reader of environment variables.

Unset DATABASE_URL means the embedded default (a SQLite file under the data directory); unset
REDIS_URL means jobs run in an in-process executor instead of Celery workers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Embedded database and artifacts")
    database_url: str | None = None
    redis_url: str | None = None
    artifact_dir: Path | None = Field(default=None, description="Defaults to DATA_DIR/artifacts")

    # Celery
    celery_queue: str = "fitapi"
    celery_visibility_timeout_s: int = 3600

    # Jobs
    device: str = "auto"
    job_lease_s: float = 30.0
    job_heartbeat_s: float = 1.0
    job_max_attempts: int = 3
    job_unclaimed_after_s: float = 60.0
    reaper_interval_s: float = 10.0
    checkpoint_every_s: float = 30.0
    checkpoint_keep: int = Field(
        default=0, ge=0,
        description="Periodic checkpoints kept per job, the newest (0 keeps every one); "
        "ModelCheckpoint saves and the final checkpoint are always kept",
    )  # fmt: skip
    local_workers: int = 1
    migrate_on_start: bool | None = None  # default: only for the embedded SQLite database

    # Streams
    events_poll_s: float = 0.2
    events_keepalive_s: float = 15.0
    events_max_s: float = 300.0
    events_progress_s: float = Field(
        default=0.25, ge=0, description="Least seconds between two per-batch progress events"
    )

    # Limits
    max_request_bytes: int = 64 * 1024 * 1024
    dataset_max_bytes: int = Field(
        default=20 << 30, ge=1, description="One dataset upload (413 beyond), apart from the "
        "request body limit",
    )  # fmt: skip
    predict_sync_max_rows: int = Field(
        default=10_000, ge=1, description="A predict or evaluate over more rows runs as a job",
    )  # fmt: skip
    model_cache_size: int = 16
    model_max_params: int = Field(default=50_000_000, ge=1, description="Weights in one model")
    model_max_layers: int = Field(default=1000, ge=1, description="Layers, nested ones included")
    model_max_depth: int = Field(default=8, ge=1, description="Nesting of wrapper layers")
    model_max_tensor_elements: int = Field(
        default=1 << 26, ge=1, description="Elements of one sample's tensor anywhere in a model"
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'fitapi.db').resolve()}"

    @property
    def resolved_artifact_dir(self) -> Path:
        return (self.artifact_dir or self.data_dir / "artifacts").resolve()

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def should_migrate_on_start(self) -> bool:
        return self.is_sqlite if self.migrate_on_start is None else self.migrate_on_start


@lru_cache
def get_settings() -> Settings:
    return Settings()
