"""Domain errors carry their HTTP status; one handler in the API renders them.

The body follows FastAPI's validation shape, `{"detail": [{"loc", "msg", "type"}]}`, so clients
parse every 4xx the same way.
"""

from __future__ import annotations

from collections.abc import Sequence


class AppError(Exception):
    status_code = 400
    error_type = "bad_request"

    def __init__(self, message: str, *, loc: Sequence[str | int] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.loc = list(loc)


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
