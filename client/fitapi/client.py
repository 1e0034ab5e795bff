"""The Client: one HTTP connection pool to a fitapi server, its key, and the retry policy
(connection errors, 502/503/504, 429 with Retry-After, a 409 `idempotency_key_in_use`; an
Idempotency-Key on every POST that stays the same across its retries; a DELETE whose answer was
lost and whose retry finds nothing has succeeded). `client.datasets`, `client.models` and
`client.jobs` are the resources."""

from __future__ import annotations

import contextlib
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from fitapi.errors import error_from_response

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = frozenset({502, 503, 504, 429})
# Failures before any answer: the request may be sent again (a POST carries its key).
RETRY_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadError, httpx.WriteError,
                httpx.RemoteProtocolError, httpx.PoolTimeout)  # fmt: skip
# Of those, the ones after which the server may have received the request and acted on it.
MAYBE_SENT_ERRORS = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
# A 409 answered while the first request with the same Idempotency-Key still runs (with
# Retry-After): the retry of a request whose answer was lost. Asked again, it gets that answer.
KEY_IN_USE = "idempotency_key_in_use"
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 120.0

# A body that can be sent again: bytes, or a function that opens it afresh for each attempt.
Content = bytes | Callable[[], Iterable[bytes]]


class Client:
    """`fitapi.Client(url, api_key)`: url and key default to FITAPI_URL and FITAPI_API_KEY."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        from fitapi.datasets import Datasets
        from fitapi.jobs import Jobs
        from fitapi.models import Models

        self.url = (url or os.environ.get("FITAPI_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("FITAPI_API_KEY")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        headers = {"User-Agent": "fitapi-client"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
        self.datasets = Datasets(self)
        self.models = Models(self)
        self.jobs = Jobs(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def __repr__(self) -> str:
        return f"fitapi.Client({self.url!r})"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: Content | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send a request, retrying what can be retried; an error answer raises ApiError. A
        DELETE retried after a try that may have reached the server returns the retry's 404:
        the first try deleted it."""
        method = method.upper()
        sent = dict(headers or {})
        if method == "POST" and not any(k.lower() == "idempotency-key" for k in sent):
            sent["Idempotency-Key"] = str(uuid.uuid4())  # one per logical call
        query = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        maybe_done = False  # an earlier try may have reached the server and been carried out
        while True:
            body = content() if callable(content) else content
            try:
                response = self.http.request(
                    method, path, params=query, json=json, content=body, headers=sent,
                    timeout=timeout if timeout is not None else self.timeout,
                )  # fmt: skip
            except RETRY_ERRORS as exc:
                if attempt >= self.retries:
                    raise
                maybe_done = maybe_done or isinstance(exc, MAYBE_SENT_ERRORS)
                self._sleep(attempt, None)
                attempt += 1
                continue
            status = response.status_code
            if attempt < self.retries and (status in RETRY_STATUSES or _key_in_use(response)):
                self._sleep(attempt, response.headers.get("retry-after"))
                attempt += 1
                continue
            if status == 404 and method == "DELETE" and maybe_done:
                return response  # the lost answer was the delete's own: it is gone, as asked
            if status >= 400:
                raise error_from_response(response)
            return response

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        time.sleep(backoff_delay(self.backoff, attempt, retry_after))

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params).json()

    def post_json(
        self, path: str, body: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        response = self.request("POST", path, json=body, params=params)
        return response.json() if response.content else None


def backoff_delay(base: float, attempt: int, retry_after: str | None = None) -> float:
    """Bounded exponential backoff with jitter; a Retry-After in seconds wins."""
    delay = min(MAX_BACKOFF_S, base * 2**attempt) * (0.5 + random.random() / 2)
    if retry_after is not None:
        with contextlib.suppress(ValueError):  # an HTTP date: the backoff stands
            delay = min(MAX_RETRY_AFTER_S, max(0.0, float(retry_after)))
    return delay


def _key_in_use(response: httpx.Response) -> bool:
    """A 409 saying that the first request with this Idempotency-Key still runs (any other
    409, `idempotency_response_not_kept` included, is final)."""
    if response.status_code != 409:
        return False
    return error_from_response(response).type == KEY_IN_USE
