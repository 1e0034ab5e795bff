"""The Celery application for `celery -A workers.celery_app worker`.

Celery needs a module-level app; its policy lives in app.core.celery.make_celery.
"""

from __future__ import annotations

from app.core.celery import make_celery
from app.core.config import get_settings

app = make_celery(get_settings())
app.conf.imports = ("workers.tasks",)

from workers import signals  # noqa: E402, F401  (its receivers: logging, metrics port)
