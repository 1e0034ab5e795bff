"""The one Settings object: the only reader of environment variables.

Unset DATABASE_URL means the embedded default (a SQLite file under the data directory); unset
REDIS_URL means jobs run in an in-process executor instead of Celery workers.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_ORIGIN = re.compile(r"https?://[^/?#\s]+")


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
    # A job whose message nobody claimed for this long: a lease-expired one fails (WorkerLost:
    # no worker took it), a queued one gets its message sent again (a broker may lose one).
    job_orphaned_after_s: float = Field(default=600.0, gt=0)
    reaper_interval_s: float = 10.0
    sweep_interval_s: float = Field(
        default=900.0, ge=0, description="Seconds between two sweeps of the artifact store for "
        "files no row references, run by the reaper (0: never)",
    )  # fmt: skip
    # Above the longest gap between an artifact's last write and the commit of its row (a
    # predict's outputs are hashed in between), and above a synchronous request's deadline.
    sweep_grace_s: float = Field(
        default=3600.0, ge=60, description="Age (since its last write) past which an "
        "unreferenced artifact file is swept",
    )  # fmt: skip
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

    # Authentication and quotas. Authentication is on when AUTH_REQUIRED is true or once any
    # API key has been created; with neither, the server runs single-user (one implicit admin
    # on the `default` project).
    auth_required: bool = False
    quota_models: int = Field(default=1000, ge=0, description="Models per project")
    quota_queued_jobs: int = Field(
        default=100, ge=0, description="Queued jobs per project (429 beyond)"
    )
    quota_running_jobs: int = Field(
        default=8, ge=0, description="Jobs of one project running at once; more wait queued"
    )
    quota_stored_bytes: int = Field(
        default=100 << 30, ge=0,
        description="Datasets, uploaded weights and checkpoints per project",
    )  # fmt: skip
    quota_requests_per_s: float = Field(
        default=100.0, ge=0, description="Sustained requests per second per project and API "
        "process (429 with Retry-After beyond); 0 turns the limit off",
    )  # fmt: skip
    quota_burst: int = Field(
        default=200, ge=1, description="Requests a project may send at once above the rate"
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
    # Cost per request, in tensor elements (app.models.cost). 2**27 elements is 512 MiB of
    # float32 at most in the API process per synchronous request: PREDICT_SYNC_MAX_ROWS rows of
    # the README's MNIST MLP cost about 2**24, an eighth of it, while one sample of a model at
    # MODEL_MAX_TENSOR_ELEMENTS (2**26) still fits, so such a model's requests can be checked
    # on one sample, and more of it goes to a job.
    sync_max_cost: int = Field(
        default=1 << 27, ge=1, description="Rows x estimated elements per sample that one "
        "synchronous request may cost in the API process: predict and evaluate past it run as "
        "a job (202); the *_on_batch routes, adapt, compile and a fit's checks are refused (413)",
    )  # fmt: skip
    sync_deadline_s: float = Field(
        default=30.0, gt=0, description="Seconds a synchronous predict or evaluate may run; "
        "past it, the loop stops between batches with a 422 (deadline_exceeded)",
    )  # fmt: skip
    # Each epoch is a durable row, a stream event and, with callbacks, a checkpoint: 10,000 is
    # more than early-stopped fits ask for, and bounds what one job writes.
    job_max_epochs: int = Field(
        default=10_000, ge=1, description="Epochs of one fit job (422 naming epochs beyond)"
    )
    job_max_steps: int = Field(
        default=10_000_000, ge=1, description="Epochs x steps per epoch of one fit job (422 "
        "naming epochs beyond)",
    )  # fmt: skip
    # 2**32 elements is 16 GiB of float32 per batch: a large GPU's batch of a large model, far
    # from the terabytes a hostile batch_size could ask for.
    job_max_batch_cost: int = Field(
        default=1 << 32, ge=1, description="Batch size x estimated elements per sample of one "
        "batch of a fit, predict or evaluate job (422 naming batch_size beyond)",
    )  # fmt: skip

    # Operations: probes, metrics and logs (README, "Operating it").
    log_format: Literal["text", "json"] = Field(
        default="text", description="`text` lines, or one JSON object per line with the "
        "request id, job id, attempt and worker where known",
    )  # fmt: skip
    metrics_public: bool = Field(
        default=False, description="Serve the API's /metrics without a key even while keys "
        "are required (for a scraper on a private network); otherwise it needs an admin key",
    )  # fmt: skip
    metrics_port: int = Field(
        default=0, ge=0, le=65535, description="A Celery worker serves its metrics on this "
        "port (a prefork pool's child i on METRICS_PORT + 1 + i); 0: none",
    )  # fmt: skip
    metrics_host: str = Field(
        default="127.0.0.1", description="Address a worker's metrics port binds (0.0.0.0 in a "
        "container)",
    )  # fmt: skip
    readiness_timeout_s: float = Field(
        default=2.0, gt=0, description="Seconds each /readyz check may take before it counts "
        "as failed",
    )  # fmt: skip

    # Webhooks (app.webhooks): sent by a thread of the API process, never inside a request.
    webhook_max_per_project: int = Field(
        default=20, ge=0, description="Webhooks one project may register (409 beyond)"
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, description="Tries of one delivery before it is given up (`failed`)"
    )
    webhook_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="Seconds one delivery's POST may take"
    )
    webhook_retry_base_s: float = Field(
        default=10.0, gt=0, description="Wait after the first failed try; doubled after each "
        "further one, up to WEBHOOK_RETRY_MAX_S",
    )  # fmt: skip
    webhook_retry_max_s: float = Field(
        default=3600.0, gt=0, description="Longest wait between two tries of a delivery"
    )
    webhook_poll_s: float = Field(
        default=1.0, gt=0, description="How often the sender looks for deliveries that are due"
    )
    webhook_keep_s: float = Field(
        default=7 * 86400.0, gt=0, description="Seconds a delivered or given-up delivery is "
        "kept (listed under its webhook) before the sender prunes it",
    )  # fmt: skip
    # Private, loopback, link-local and reserved addresses are where a server's internal
    # services live (a cloud's metadata endpoint, a database port): a tenant must not make the
    # server POST to them. Unset: allowed only in the embedded mode (no DATABASE_URL), which
    # serves one local user whose receiver is typically on the same machine (SQLite is one
    # machine's database by construction).
    webhook_allow_private: bool | None = Field(
        default=None, description="Whether webhook URLs may reach private, loopback or "
        "link-local addresses; unset: only in the embedded mode (SQLite)",
    )  # fmt: skip

    # Idempotent retries (app.api.idempotency): a POST under /v1 with an Idempotency-Key.
    idempotency_keep_s: float = Field(
        default=86400.0, gt=0, description="Seconds a key and its stored response are kept: a "
        "retry within it gets the first response again; after it the key is pruned and free",
    )  # fmt: skip
    idempotency_in_progress_s: float = Field(
        default=60.0, ge=3, description="Seconds after the last sign of life (renewed every "
        "third of it while the request runs) past which a key whose request never finished "
        "(its process died) may be taken by a retry",
    )  # fmt: skip
    idempotency_max_response_bytes: int = Field(
        default=1 << 20, ge=0, description="Largest response body stored for replay; a larger "
        "response is not stored, and a retry runs again",
    )  # fmt: skip

    # Browsers. NoDecode: the environment's value is parsed by `_origins` below, so that a
    # comma-separated list works as well as a JSON one.
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser (CORS), e.g. "
        "`https://a.example,https://b.example` or a JSON list; empty: no CORS headers at all",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origin_form(cls, origins: list[str]) -> list[str]:
        # A browser's Origin is `scheme://host[:port]`, compared as an exact string: a trailing
        # slash or a path would never match, so it is refused at start-up rather than ignored.
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin such as https://app.example:8443")
        return origins

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
    def webhooks_may_reach_private(self) -> bool:
        if self.webhook_allow_private is None:
            return self.is_sqlite
        return self.webhook_allow_private

    @property
    def should_migrate_on_start(self) -> bool:
        return self.is_sqlite if self.migrate_on_start is None else self.migrate_on_start


@lru_cache
def get_settings() -> Settings:
    return Settings()
