"""Domain errors carry their HTTP status; one handler in the API renders them.

The body follows FastAPI's validation shape, `{"detail": [{"loc", "msg", "type"}]}`, so clients
parse every 4xx the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class AppError(Exception):
    status_code = 400
    error_type = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        loc: Sequence[str | int] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.loc = list(loc)
        self.headers = dict(headers or {})


class InvalidInput(AppError):
    status_code = 422
    error_type = "value_error"


class NotFound(AppError):
    status_code = 404
    error_type = "not_found"


class Conflict(AppError):
    status_code = 409
    error_type = "conflict"


class PayloadTooLarge(AppError):
    status_code = 413
    error_type = "payload_too_large"


class Unavailable(AppError):
    """The server cannot take the request now (it is shutting down): try again, elsewhere."""

    status_code = 503
    error_type = "unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class Unauthorized(AppError):
    """No API key, or one that is unknown or revoked."""

    status_code = 401
    error_type = "unauthorized"


class Forbidden(AppError):
    """The key's role is too weak for the action."""

    status_code = 403
    error_type = "forbidden"


class QuotaExceeded(AppError):
    """A project's quota: 409 for what stays used until something is deleted (models, stored
    bytes), 429 with Retry-After for what frees up on its own (queued jobs, requests)."""

    error_type = "quota_exceeded"

    def __init__(
        self,
        *,
        quota: str,
        limit: int | float,
        used: int | float,
        status_code: int = 409,
        retry_after_s: int | None = None,
    ) -> None:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
        super().__init__(
            f"the project's {quota} quota is exceeded: limit {limit}, in use {used}",
            loc=["quota", quota],
            headers=headers,
        )
        self.status_code = status_code
        self.quota, self.limit, self.used = quota, limit, used
