"""Failure classes of a job attempt, and what each does (docs/operations.md, "Failures, and what
each does to a job"):

- transient: the database dropped the connection or refused a serialization, the broker
  hiccuped, the disk is full, read-only or failing. Retried in place with bounded backoff
  (`retried`); if it persists, the attempt ends and the job is dispatched again, until its
  attempts run out (then it fails as `TransientError`).
- deterministic: the user's data, model or settings (EngineError and its kinds: shapes, NaN
  policy, ...). The job fails with that error's type and message.
- anything else: a bug. The job fails as `InternalError` with a message that names no SQL, no
  parameter and no server path; the traceback goes to the log under the job's id.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT = "TransientError"
INTERNAL = "InternalError"

# Disk faults that another try, or another machine, may not meet.
_DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT, errno.EAGAIN, errno.EBUSY,
                errno.ENOMEM, errno.ESTALE, errno.ETIMEDOUT}  # fmt: skip
# Postgres SQLSTATEs: serialization failure, deadlock, and the connection and shutdown classes.
_RETRY_SQLSTATES = ("40001", "40P01")
_RETRY_SQLSTATE_CLASSES = ("08", "57", "53")


class CheckpointMissing(Exception):
    """The checkpoint a job resumes from was deleted after it was submitted."""


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return state if isinstance(state, str) else None


def _broker_error(exc: BaseException) -> bool:
    try:
        from kombu.exceptions import OperationalError as KombuOperationalError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeout
    except ImportError:  # pragma: no cover - both come with the project's dependencies
        return False
    return isinstance(exc, KombuOperationalError | RedisConnectionError | RedisTimeout)


def is_transient(exc: BaseException) -> bool:
    """Whether trying again (now, or on another worker) may succeed."""
    for err in _chain(exc):
        if isinstance(err, DBAPIError):
            if err.connection_invalidated or isinstance(err, OperationalError):
                return True
            state = _sqlstate(err)
            if state is not None and (
                state in _RETRY_SQLSTATES or state[:2] in _RETRY_SQLSTATE_CLASSES
            ):
                return True
        if isinstance(err, PoolTimeout | ConnectionError | TimeoutError):
            return True
        if isinstance(err, OSError) and err.errno in _DISK_ERRNOS:
            return True
        if _broker_error(err):
            return True
    return False


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def describe(exc: BaseException) -> str:
    """What a client may read of a transient fault: its kind, never its text (a driver's message
    holds SQL and parameters, an OSError the server's path)."""
    for err in _chain(exc):
        if isinstance(err, DBAPIError | PoolTimeout):
            return "the database connection failed"
        if isinstance(err, OSError) and err.errno in _DISK_ERRNOS:
            code = errno.errorcode.get(err.errno or 0, "EIO")
            return f"the artifact store failed ({code})"
        if _broker_error(err):
            return "the broker connection failed"
    return "a connection failed"


def retried(
    action: Callable[[], T], *, what: str, tries: int = 5, base_s: float = 0.2, max_s: float = 2.0
) -> T:
    """Run `action`, trying again after a transient failure with backoff (base_s, doubled, at
    most max_s), `tries` times in all; the last failure, or any other one, propagates. The action
    must be safe to repeat: each try opens its own transaction."""
    for attempt in range(tries):
        try:
            return action()
        except Exception as exc:
            if attempt == tries - 1 or not is_transient(exc):
                raise
            delay = min(max_s, base_s * 2**attempt)
            log.warning("%s failed (%s); trying again in %.1f s", what, type(exc).__name__, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
