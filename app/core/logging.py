"""Logging set-up shared by the API and the workers, and the log context: the request id, job
id, attempt and worker that every record carries where they are known.

The context lives in context variables: the API's middleware sets the request id for one
request, `log_context` sets the job id around a job's run (and undoes whatever was bound inside
it), and the runner `bind`s the attempt and the worker once it has claimed the job. A thread
starts with an empty context, so a value never leaks from one request or job to the next."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

FIELDS = ("request_id", "job_id", "attempt", "worker")
_VARS: dict[str, ContextVar[Any]] = {name: ContextVar(f"fitapi_{name}", default=None)
                                     for name in FIELDS}  # fmt: skip
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Uvicorn's loggers have handlers of their own; in JSON mode their records go through ours.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def bind(**values: Any) -> None:
    """Put `values` (some of FIELDS) on every later record of this context."""
    for name, value in values.items():
        _VARS[name].set(None if value is None else value if isinstance(value, int) else str(value))


def current(name: str) -> Any:
    return _VARS[name].get()


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """`bind(**values)` for the block; on leaving it, every field is as it was on entering
    (what the block bound too)."""
    saved = {name: var.get() for name, var in _VARS.items()}
    bind(**values)
    try:
        yield
    finally:
        for name, value in saved.items():
            _VARS[name].set(value)


class ContextFilter(logging.Filter):
    """Copies the log context onto each record (a field the call already set stays)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _VARS.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(f"{name}={value}" for name in FIELDS
                       if (value := getattr(record, name, None)) is not None)  # fmt: skip
        if not ids:
            return text
        head, sep, tail = text.partition("\n")  # after the message, before a traceback
        return f"{head} [{ids}]{sep}{tail}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the context's
    fields that are set, and the traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)


def make_handler(log_format: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    return handler


def configure(*, log_format: str = "text", level: int | str = logging.INFO) -> None:
    """Install the process's handler on the root logger, unless logging was configured
    already (a test runner, or uvicorn's --log-config): then only our own handler, installed by
    an earlier call, changes format. Safe to call more than once."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "fitapi", False)]
    if ours:
        for handler in ours:
            handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    elif root.handlers:
        return
    else:
        handler = make_handler(log_format)
        handler.fitapi = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(level)
    if log_format == "json":
        for name in UVICORN_LOGGERS:
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
