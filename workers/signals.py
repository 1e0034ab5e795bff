"""What a worker process sets up as it starts, through Celery's signals: its logging (our
handler and LOG_FORMAT rather than Celery's, so records carry the job id, attempt and worker) and
its metrics port.

Metrics are per process: each process that runs fits serves its own on a port. With
`--pool=solo` (one job at a time per process, as docs/operations.md runs workers) or
`--pool=threads`, that is the worker's process, on METRICS_PORT. A prefork pool runs jobs in
child processes: child i serves METRICS_PORT + 1 + i (its index in the pool, reused by its
replacement), which spares Prometheus's multiprocess mode and its shared files."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import setup_logging, worker_init, worker_process_init

from app.core.config import get_settings
from app.core.logging import configure
from app.runtime.metrics import serve_port


@setup_logging.connect
def _logging(loglevel: int | str | None = None, **_: Any) -> None:
    configure(log_format=get_settings().log_format, level=loglevel or logging.INFO)


@worker_init.connect
def _metrics(**_: Any) -> None:
    settings = get_settings()
    if settings.metrics_port:
        serve_port(settings.metrics_port, settings.metrics_host)


@worker_process_init.connect
def _child_metrics(**_: Any) -> None:
    from billiard.process import current_process

    settings = get_settings()
    if settings.metrics_port:
        index = int(getattr(current_process(), "index", 0))
        serve_port(settings.metrics_port + 1 + index, settings.metrics_host)
