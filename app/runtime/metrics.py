"""The Prometheus metrics of every process, defined once: the API and the workers import them
from here and observe them where things happen; `exposition` writes them out for /metrics and
`serve_port` serves a worker's on a port of its own.

Each process keeps its own values, so each is scraped on its own: the API on /metrics (request
metrics, the reaper's actions and, computed at scrape time, jobs by status and queue depth), a
Celery worker on METRICS_PORT (its fits' epochs, checkpoints, heartbeats and job durations). In
the embedded mode the API process runs the jobs too, so its /metrics has everything. No label
holds an id: routes are templates, workers are host:pid."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)

if TYPE_CHECKING:
    from app.engine.training.batches import BatchIterator

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# No `_created` series beside each counter and histogram: they double a scrape's size, and
# Prometheus does not need them to compute rates.
disable_created_metrics()

REQUESTS = Counter(
    "fitapi_http_requests", "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)  # fmt: skip
REQUEST_SECONDS = Histogram(
    "fitapi_http_request_duration_seconds",
    "Seconds from a request's arrival to its response's last byte (an event stream counts "
    "its whole length)",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
JOB_SECONDS = Histogram(
    "fitapi_job_duration_seconds",
    "Seconds from a job's first start to its end, observed by the worker whose attempt ended it",
    ["kind", "status"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400),
)
EPOCH_SECONDS = Histogram(
    "fitapi_epoch_duration_seconds", "Seconds of one fit epoch, its validation included",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600),
)  # fmt: skip
TRAIN_SAMPLES = Counter(
    "fitapi_train_samples", "Training samples the fits of this process have run through"
)
SAMPLES_PER_S = Gauge(
    "fitapi_train_samples_per_second",
    "Training samples per second of the last epoch that ended in this process",
)
CHECKPOINT_SECONDS = Histogram(
    "fitapi_checkpoint_write_seconds",
    "Seconds to serialise a checkpoint and write it durably to the artifact store",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
REAPER_ACTIONS = Counter(
    "fitapi_reaper_actions", "What the reaper did to jobs: redispatched, cancelled (a "
    "cancelled job whose worker went away) or failed (WorkerLost)",
    ["action"],
)  # fmt: skip
REAPER_ACTION_NAMES = ("redispatched", "cancelled", "failed")
HEARTBEATS = Counter(
    "fitapi_worker_heartbeats", "Lease renewals of running jobs, by worker (host:pid)", ["worker"]
)
LAST_HEARTBEAT = Gauge(
    "fitapi_worker_last_heartbeat_timestamp_seconds",
    "Unix time of the worker's last lease renewal",
    ["worker"],
)
for _action in REAPER_ACTION_NAMES:  # present at 0 from the start, so rate() sees the first
    REAPER_ACTIONS.labels(_action)


def worker_label() -> str:
    # The pid at call time: a prefork pool's children are forked after this module loads.
    return f"{socket.gethostname()}:{os.getpid()}"


def heartbeat() -> None:
    worker = worker_label()
    HEARTBEATS.labels(worker).inc()
    LAST_HEARTBEAT.labels(worker).set(time.time())


def reaper_acted(action: str, count: int) -> None:
    if count:
        REAPER_ACTIONS.labels(action).inc(count)


class EpochClock:
    """Times a fit's epochs and counts the training samples each one ran through, from the
    position of the fit's batch iterator (a `steps_per_epoch` fit carries a pass over)."""

    def __init__(self) -> None:
        self._started: tuple[float, int] | None = None

    @staticmethod
    def _done(batches: BatchIterator) -> int:
        return min(batches.seen * batches.batch_size, batches.n)

    def begin(self, batches: BatchIterator | None) -> None:
        if batches is None:
            return
        # An epoch starts a new pass unless a `steps_per_epoch` fit is inside one.
        carried = batches.in_pass and batches.steps_per_epoch is not None
        self._started = (time.monotonic(), self._done(batches) if carried else 0)

    def end(self, batches: BatchIterator | None) -> None:
        if self._started is None or batches is None:
            return
        began, before = self._started
        self._started = None
        seconds = time.monotonic() - began
        samples = max(0, self._done(batches) - before)
        EPOCH_SECONDS.observe(seconds)
        TRAIN_SAMPLES.inc(samples)
        if seconds > 0:
            SAMPLES_PER_S.set(samples / seconds)


def exposition(*extra: CollectorRegistry) -> bytes:
    """The process's metrics, then those of `extra` registries (an app's scrape-time ones), in
    the Prometheus text format."""
    return b"".join([generate_latest(REGISTRY), *(generate_latest(r) for r in extra)])


_served: set[int] = set()
_served_lock = threading.Lock()


def serve_port(port: int, host: str) -> bool:
    """Serve this process's metrics on `host:port` from a daemon thread; once per port. A port
    in use is logged, not raised: a worker without metrics still runs jobs."""
    with _served_lock:
        if port in _served:
            return True
        try:
            start_http_server(port, addr=host)
        except OSError:
            log.exception("could not serve metrics on %s:%s", host, port)
            return False
        _served.add(port)
    log.info("metrics on http://%s:%s/metrics", host, port)
    return True
