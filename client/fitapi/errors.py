"""The client's exceptions, all FitapiError: the server's errors (status, `type`, `loc`, `msg`)
as ApiError and its subclasses, a job that ends failed or cancelled, and a job's event stream
that cannot be followed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from fitapi.jobs import Job


class FitapiError(Exception):
    """What the client raises on purpose (connection failures stay httpx.TransportError)."""


class ApiError(FitapiError):
    """A 4xx or 5xx answer: `detail` is the server's list of errors, and `loc`, `msg` and `type`
    those of the first (`loc` names the field, e.g. ["body", "compile", "loss"])."""

    def __init__(
        self,
        status: int,
        detail: list[dict[str, Any]],
        *,
        request_id: str | None = None,
        method: str = "",
        url: str = "",
    ) -> None:
        self.status = status
        self.detail = detail
        first = detail[0] if detail else {}
        self.loc: list[Any] = list(first.get("loc") or [])
        self.msg: str = str(first.get("msg", ""))
        self.type: str = str(first.get("type", "error"))
        self.request_id = request_id
        self.method, self.url = method, url
        where = ".".join(str(part) for part in self.loc)
        text = f"{status} {self.type}" + (f" at {where}" if where else "") + f": {self.msg}"
        if len(detail) > 1:
            text += f" (and {len(detail) - 1} more)"
        super().__init__(text)


class InvalidRequest(ApiError):
    """400, 413 or 422: the request was refused as it stands."""


class Unauthorized(ApiError):
    """401 (no key, or a bad one) or 403 (a role too weak for the route)."""


class NotFound(ApiError):
    """404: no such resource in the caller's project."""


class Conflict(ApiError):
    """409: the resource is in a state that forbids it now (a fit running, a quota reached).
    `type` "idempotency_response_not_kept": a retry whose first try was carried out but whose
    answer the server did not keep; the first try's effect stands (look the resource up)."""


class RateLimited(ApiError):
    """429 still answered after the client's retries."""


class ServerError(ApiError):
    """5xx still answered after the client's retries."""


def _kind(status: int) -> type[ApiError]:
    if status in (400, 413, 422):
        return InvalidRequest
    if status in (401, 403):
        return Unauthorized
    if status == 404:
        return NotFound
    if status == 409:
        return Conflict
    if status == 429:
        return RateLimited
    if status >= 500:
        return ServerError
    return ApiError


def error_from_response(response: httpx.Response) -> ApiError:
    """The exception for an error answer, read from its `{"detail": [...]}` body (any other
    body becomes one error with the text as its `msg`)."""
    detail: list[dict[str, Any]]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        detail = [d if isinstance(d, dict) else {"msg": str(d)} for d in body["detail"]]
    elif isinstance(body, dict) and isinstance(body.get("detail"), str):
        detail = [{"loc": [], "msg": body["detail"], "type": "error"}]
    else:
        detail = [{"loc": [], "msg": response.text[:500] or response.reason_phrase,
                   "type": "http_error"}]  # fmt: skip
    request = response.request
    return _kind(response.status_code)(
        response.status_code,
        detail,
        request_id=response.headers.get("x-request-id"),
        method=request.method if request else "",
        url=str(request.url) if request else "",
    )


class JobFailed(FitapiError):
    """The job ended `failed`: `type` and `message` are the job's `error`."""

    def __init__(self, job: Job) -> None:
        self.job = job
        error = job.raw.get("error") or {}
        self.type: str = str(error.get("type", "Failed"))
        self.message: str = str(error.get("message", ""))
        super().__init__(f"job {job.id} failed: {self.type}: {self.message}")


class JobCancelled(FitapiError):
    """The job ended `cancelled` (POST /v1/jobs/{id}/cancel)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        super().__init__(f"job {job.id} was cancelled")


class EventStreamError(FitapiError):
    """A job's event stream kept ending without the job's outcome (the job itself goes on:
    follow it again, or poll it with `job.refresh()`)."""

    def __init__(self, job_id: str, reopened: int) -> None:
        self.job_id = job_id
        self.reopened = reopened
        super().__init__(
            f"the event stream of job {job_id} ended {reopened} times without the job's status"
        )
