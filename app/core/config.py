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

    data_dir: Path = Field(
        default=Path("data"),
        description="Folder (relative to the working directory, or absolute) of the "
        "embedded SQLite database (`fitapi.db`) and, unless ARTIFACT_DIR is set, of the artifacts",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the database (`postgresql+psycopg://...` in production); "
        "unset: the SQLite file DATA_DIR/fitapi.db",
    )
    redis_url: str | None = Field(
        default=None,
        description="Celery broker (`redis://host:6379/0`): jobs go to Celery workers; unset: "
        "jobs run in the API process's in-process executor",
    )
    artifact_dir: Path | None = Field(
        default=None,
        description="Datasets, job inputs, weights and checkpoints: one folder shared by the API "
        "and every worker; unset: DATA_DIR/artifacts",
    )

    # Celery
    celery_queue: str = Field(
        default="fitapi",
        description="Celery queue the API sends jobs to and workers read (GPU and CPU workers "
        "can take different queues)",
    )
    celery_visibility_timeout_s: int = Field(
        default=3600,
        description="Seconds Redis holds a delivered, unacknowledged message before it hands it "
        "to another worker (Celery's visibility_timeout); a second delivery of a job that runs "
        "claims nothing and is dropped",
    )

    # Jobs
    device: str = Field(
        default="auto",
        description="Where workers train and the API evaluates and predicts (a torch device "
        "such as `cpu` or `cuda:0`); `auto`: CUDA when present, else the CPU",
    )
    job_lease_s: float = Field(
        default=30.0,
        description="Seconds a worker's claim on a job lasts without renewal; a job whose lease "
        "expired is resumed by another worker from its last checkpoint",
    )
    job_heartbeat_s: float = Field(
        default=1.0,
        description="Seconds between two renewals of a running job's lease; also how soon a "
        "cancel reaches the fit",
    )
    job_max_attempts: int = Field(
        default=3,
        description="Claims a job may have; after that many, a job whose worker was lost fails "
        "with WorkerLost",
    )
    # A job whose message nobody claimed for this long: a lease-expired one fails (WorkerLost:
    # no worker took it), a queued one gets its message sent again (a broker may lose one).
    job_orphaned_after_s: float = Field(
        default=600.0,
        gt=0,
        description="Seconds after which a job whose lease expired and that no worker takes "
        "fails with WorkerLost, and a queued job's unclaimed message is sent again",
    )
    reaper_interval_s: float = Field(
        default=10.0,
        description="Seconds between two passes of the reaper (in every API process), which "
        "sends messages to waiting and lease-expired jobs",
    )
    sweep_interval_s: float = Field(
        default=900.0, ge=0, description="Seconds between two sweeps of the artifact store for "
        "files no row references, run by the reaper (0: never)",
    )  # fmt: skip
    # Above the longest gap between an artifact's last write and the commit of its row (a
    # predict's outputs are hashed in between), and above a synchronous request's deadline.
    sweep_grace_s: float = Field(
        default=3600.0, ge=60, description="Seconds since its last write past which "
        "an unreferenced artifact file is swept",
    )  # fmt: skip
    epoch_commit_s: float = Field(
        default=0.1, ge=0, le=60,
        description="Least seconds between two commits of a training job's epoch rows: the "
        "epochs that end meanwhile are committed together (a checkpoint and the job's end "
        "commit at once). 0 commits each epoch's row as it ends",
    )  # fmt: skip
    checkpoint_every_s: float = Field(
        default=30.0,
        description="Seconds between two periodic checkpoints while a job trains (one is "
        "always written at the end)",
    )
    checkpoint_keep: int = Field(
        default=0, ge=0,
        description="Periodic checkpoints kept per job, the newest (0 keeps every one); older "
        "ones are unregistered, then their files deleted. ModelCheckpoint saves, the final "
        "checkpoint and the periodic one that `best` names are always kept",
    )  # fmt: skip
    local_workers: int = Field(
        default=1, description="Threads of the in-process executor (without REDIS_URL)"
    )
    migrate_on_start: bool | None = Field(
        default=None,
        description="Run `alembic upgrade head` as the API starts; unset: only on the embedded "
        "SQLite database",
    )

    # Streams
    events_poll_s: float = Field(
        default=0.2,
        description="Seconds between two looks of an event stream for new rows (the streams of "
        "one job in an API process share a look taken less than half of this ago)",
    )
    events_keepalive_s: float = Field(
        default=15.0,
        description="Seconds of silence after which an event stream sends a keep-alive comment, "
        "so proxies do not close it",
    )
    events_max_s: float = Field(
        default=300.0,
        description="Seconds one event stream lasts; it then ends with a `reconnect` event and "
        "the client reconnects with Last-Event-ID",
    )
    events_progress_s: float = Field(
        default=0.25, ge=0, description="Least seconds between two per-batch progress events"
    )

    # Authentication and quotas. Authentication is on when AUTH_REQUIRED is true or once any
    # API key has been created; with neither, the server runs single-user (one implicit admin
    # on the `default` project).
    auth_required: bool = Field(
        default=False,
        description="Require an API key even before one exists (true in the image and the "
        "compose file); false: single-user until the first key is created",
    )
    auth_cache_s: float = Field(
        default=1.0, ge=0, le=60, description="Seconds an API process trusts a key it has "
        "checked (and, single-user, that no key exists) before reading the database again. A "
        "key created or revoked, or a quota set, through this process takes effect at once; "
        "through another (the admin command, another API replica) within this time. 0: every "
        "request reads its key",
    )  # fmt: skip
    quota_models: int = Field(default=1000, ge=0, description="Models per project")
    quota_queued_jobs: int = Field(
        default=100, ge=0, description="Queued jobs per project (429 beyond)"
    )
    quota_running_jobs: int = Field(
        default=8, ge=0, description="Jobs of one project running at once; more wait queued"
    )
    quota_stored_bytes: int = Field(
        default=100 << 30, ge=0,
        description="Bytes of datasets, weights files, job inputs and checkpoints per project",
    )  # fmt: skip
    quota_requests_per_s: float = Field(
        default=100.0, ge=0, description="Sustained requests per second per project and API "
        "process (429 with Retry-After beyond); 0 turns the limit off",
    )  # fmt: skip
    quota_burst: int = Field(
        default=200, ge=1, description="Requests a project may send at once above the rate"
    )
    audit_flush_s: float = Field(
        default=0.05, ge=0, le=5, description="Seconds an audit row may wait for the rows of "
        "requests ending after it, to be written in one transaction (reading the audit log "
        "writes the waiting rows first); 0 writes each at once",
    )  # fmt: skip

    # Limits
    max_request_bytes: int = Field(
        default=64 * 1024 * 1024, description="Largest request body (413 beyond)"
    )
    dataset_max_bytes: int = Field(
        default=20 << 30, ge=1, description="Bytes of one dataset upload (413 beyond, sent "
        "while the body streams in), apart from the request body limit",
    )  # fmt: skip
    predict_sync_max_rows: int = Field(
        default=10_000, ge=1, description="A predict or evaluate over more rows runs as a job",
    )  # fmt: skip
    predict_threads: int = Field(
        default=2, ge=1, le=64, description="Threads of each API process that answer "
        "synchronous predicts (the predict lane): each takes every predict waiting, reads each "
        "model's state once for them, and runs them one by one",
    )  # fmt: skip
    predict_inline_max_cost: int = Field(
        default=1 << 15, ge=0, le=1 << 24, description="On the embedded SQLite database, a "
        "predict estimated at most this many elements (rows x estimated elements per sample), "
        "on a model already built with its current weights, runs on the event loop that took "
        "the request, as a bare endpoint would, instead of on the predict lane; 0: never",
    )  # fmt: skip
    predict_batch_wait_s: float = Field(
        default=0.0, ge=0, le=0.1, description="Micro-batching of synchronous JSON predicts: "
        "a request waits up to this long for others of the same model, caller, checkpoint and "
        "batch size, and they run as one predict over all their rows (a merged row may differ "
        "from a lone one's in the last bits); 0: off, each runs alone",
    )  # fmt: skip
    model_cache_size: int = Field(
        default=16,
        description="Built models, with their weights loaded, that each process keeps for "
        "evaluate and predict (least recently used go first)",
    )
    model_max_params: int = Field(
        default=50_000_000,
        ge=1,
        description="Weights in one model, checked by a dry run before any is allocated",
    )
    model_max_layers: int = Field(default=1000, ge=1, description="Layers, nested ones included")
    model_max_depth: int = Field(
        default=8, ge=1, description="Layers inside layers (wrappers, nested models)"
    )
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
        "synchronous request may cost in the API process (2^27: 512 MiB of float32): predict "
        "and evaluate past it run as a job (202); the *_on_batch routes, adapt, compile and a "
        "fit's checks are refused (413)",
    )  # fmt: skip
    sync_deadline_s: float = Field(
        default=30.0, gt=0, description="Seconds a synchronous predict or evaluate may run; "
        "past it, the loop stops between batches with a 422 (deadline_exceeded)",
    )  # fmt: skip
    # Each epoch is a durable row, a stream event and, with callbacks, a checkpoint: 10,000 is
    # more than early-stopped fits ask for, and bounds what one job writes.
    job_max_epochs: int = Field(
        default=10_000,
        ge=1,
        description="Epochs of one fit job or resume (422 naming epochs beyond): each is a "
        "durable row and a stream event",
    )
    job_max_steps: int = Field(
        default=10_000_000, ge=1, description="Epochs x steps per epoch of one fit job (422 "
        "naming epochs beyond)",
    )  # fmt: skip
    # 2**32 elements is 16 GiB of float32 per batch: a large GPU's batch of a large model, far
    # from the terabytes a hostile batch_size could ask for.
    job_max_batch_cost: int = Field(
        default=1 << 32, ge=1, description="Batch size x estimated elements per sample of one "
        "batch of a fit, predict or evaluate job (2^32: 16 GiB of float32; 422 naming batch_size "
        "beyond)",
    )  # fmt: skip

    # Operations: probes, metrics and logs (docs/operations.md).
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
        default=10.0, gt=0, description="Seconds to wait after a delivery's first failed "
        "try; doubled after each further one, up to WEBHOOK_RETRY_MAX_S",
    )  # fmt: skip
    webhook_retry_max_s: float = Field(
        default=3600.0, gt=0, description="Longest wait, in seconds, between two tries"
    )
    webhook_poll_s: float = Field(
        default=1.0, gt=0, description="Seconds between two looks for due deliveries"
    )
    webhook_keep_s: float = Field(
        default=7 * 86400.0, gt=0, description="Seconds a delivered or given-up delivery is "
        "kept (listed under its webhook) before the sender prunes it; pending ones stay",
    )  # fmt: skip
    # Private, loopback, link-local and reserved addresses are where a server's internal
    # services live (a cloud's metadata endpoint, a database port): a tenant must not make the
    # server POST to them. Unset: allowed only in the embedded mode (no DATABASE_URL), which
    # serves one local user whose receiver is typically on the same machine (SQLite is one
    # machine's database by construction).
    webhook_allow_private: bool | None = Field(
        default=None, description="Whether webhook URLs may reach private, loopback, "
        "link-local or other non-public addresses; unset: only in the embedded mode (SQLite)",
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
