"""The worker container's health check, `python -m workers.health`: exit 0 when this host's
worker answers a Celery ping, or, since the solo pool answers nothing while it runs a fit, when
a worker process on this host holds a job's lease that its heartbeat keeps fresh; else 1. Optional
arguments: the ping's timeout in seconds (default 5) and the host (default this one's name,
which is the worker's node name `celery@<host>` and the first part of its lease owner)."""

from __future__ import annotations

import socket
import sys

from app.core.config import get_settings
from app.jobs.worker_health import busy_with_a_live_lease
from app.runtime.context import build_context
from workers.celery_app import app


def healthy(*, host: str, timeout_s: float = 5.0) -> bool:
    if app.control.ping(destination=[f"celery@{host}"], timeout=timeout_s):
        return True
    ctx = build_context(get_settings())
    try:
        return busy_with_a_live_lease(ctx, host=host)
    finally:
        ctx.close()


if __name__ == "__main__":
    timeout = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    host = sys.argv[2] if len(sys.argv) > 2 else socket.gethostname()
    sys.exit(0 if healthy(host=host, timeout_s=timeout) else 1)
