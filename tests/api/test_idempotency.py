"""Idempotency-Key on POST: the same key and request run once and replay; another request or
caller with the key is a 409; failures a retry would not repeat free the key; a secret or a
response too large is not kept, and its retry is a 409 that runs nothing; keys are per project,
expire, and a key whose request died is taken over. On SQLite and on Postgres, one server per
database."""

from __future__ import annotations

import io
import json
import threading
import tracemalloc
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.auth import idempotency as keys
from app.db.base import utcnow
from tests.api.conftest import TRUNCATE, serve
from tests.support import scenario

MODEL = {"config": scenario.MODEL, "seed": 1}
KEY = "Idempotency-Key"
REPLAYED = "idempotent-replayed"


@dataclass
class Api:
    client: TestClient
    alpha: dict[str, str]  # a member of project alpha
    beta: dict[str, str]  # a member of project beta
    alpha_viewer: dict[str, str]
    alpha_other: dict[str, str]  # another member key of project alpha
    admin: dict[str, str]  # an admin of project ops

    @property
    def ctx(self) -> Any:
        return self.client.app.state.ctx  # type: ignore[attr-defined]

    def post(self, path: str, who: dict[str, str], key: str | None = None, **kw: Any) -> Any:
        headers = {**who, **({KEY: key} if key is not None else {}), **kw.pop("headers", {})}
        return self.client.post(path, headers=headers, **kw)

    def total(self, who: dict[str, str], what: str = "models") -> int:
        return int(self.client.get(f"/v1/{what}", headers=who).json()["total"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    path: Path = tmp_path_factory.mktemp("idempotency")
    limits = {"quota_requests_per_s": 0, "webhook_max_per_project": 1,
              "webhook_allow_private": True}  # fmt: skip
    with serve(path, url, **limits) as client:
        admin = _bearer(client.post("/v1/admin/keys", json={"project": "ops", "role": "admin"})
                        .json()["token"])  # fmt: skip

        def key(project: str, role: str = "member") -> dict[str, str]:
            r = client.post("/v1/admin/keys", json={"project": project, "role": role},
                            headers=admin)  # fmt: skip
            assert r.status_code == 201, r.text
            return _bearer(r.json()["token"])

        yield Api(client, key("alpha"), key("beta"), key("alpha", "viewer"), key("alpha"), admin)
        if url is not None:  # the session's database goes back to single-user for later tests
            with client.app.state.ctx.engine.begin() as conn:  # type: ignore[attr-defined]
                conn.execute(text(TRUNCATE))


def _new() -> str:
    return str(uuid.uuid4())


def test_the_same_key_and_body_create_once_and_replay(api: Api) -> None:
    before, k = api.total(api.alpha), _new()
    first = api.post("/v1/models", api.alpha, k, json=MODEL)
    again = api.post("/v1/models", api.alpha, k, json=MODEL)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json()
    assert REPLAYED not in first.headers and again.headers[REPLAYED] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    assert api.total(api.alpha) == before + 1


def test_the_key_with_another_request_is_a_409(api: Api) -> None:
    k = _new()
    assert api.post("/v1/models", api.alpha, k, json=MODEL).status_code == 201
    for path, body in (("/v1/models", {**MODEL, "seed": 2}), ("/v1/webhooks", {"url": "x"})):
        r = api.post(path, api.alpha, k, json=body)
        assert r.status_code == 409, r.text
        (item,) = r.json()["detail"]
        assert item["type"] == "idempotency_key_reused" and item["loc"] == ["header", KEY]
        assert "different request" in item["msg"]


def _type(r: Any) -> str:
    (item,) = r.json()["detail"]
    assert item["loc"] == ["header", KEY], r.text
    return str(item["type"])


def test_another_caller_with_the_key_gets_no_replay(api: Api) -> None:
    """A stored response is its caller's: another key of the project, whatever its role, gets a
    409 and not the response (an admin's new token must not reach a viewer)."""
    k, body = _new(), {"project": "alpha", "role": "admin", "name": "x"}
    made = api.post("/v1/admin/keys", api.admin, json=body)
    alpha_admin = _bearer(made.json()["token"])
    assert api.post("/v1/admin/keys", alpha_admin, k, json=body).status_code == 201
    r = api.post("/v1/admin/keys", api.alpha_viewer, k, json=body)
    assert r.status_code == 409 and "token" not in r.text and _type(r) == "idempotency_key_reused"
    k = _new()
    first = api.post("/v1/models", api.alpha, k, json=MODEL)
    for other in (api.alpha_other, api.alpha_viewer):
        r = api.post("/v1/models", other, k, json=MODEL)
        assert r.status_code == 409 and _type(r) == "idempotency_key_reused", r.text
        assert "another API key" in r.json()["detail"][0]["msg"]
    assert api.post("/v1/models", api.alpha, k, json=MODEL).json() == first.json()


def test_accept_and_content_type_are_part_of_the_request(api: Api) -> None:
    model = api.post("/v1/models", api.alpha, json=MODEL).json()["id"]
    k, x = _new(), {"x": [[1.0]]}
    path = f"/v1/models/{model}/predict"
    npy = api.post(path, api.alpha, k, json=x, headers={"Accept": "application/x-npy"})
    assert npy.status_code == 200 and npy.headers["content-type"] == "application/x-npy"
    r = api.post(path, api.alpha, k, json=x, headers={"Accept": "application/json"})
    assert r.status_code == 409 and _type(r) == "idempotency_key_reused", r.text
    again = api.post(path, api.alpha, k, json=x, headers={"Accept": "application/x-npy"})
    assert again.headers[REPLAYED] == "true" and again.content == npy.content
    k, raw = _new(), json.dumps(MODEL).encode()
    plain = {"Content-Type": "application/json"}
    assert api.post("/v1/models", api.alpha, k, content=raw, headers=plain).status_code == 201
    r = api.post("/v1/models", api.alpha, k, content=raw,
                 headers={"Content-Type": "application/json; charset=utf-8"})  # fmt: skip
    assert r.status_code == 409 and _type(r) == "idempotency_key_reused", r.text


def _row(api: Api, key: str) -> Any:
    with api.ctx.engine.connect() as conn:
        found = conn.execute(text("SELECT state, status_code, response_body, response_headers "
                                  "FROM idempotency_keys WHERE key = :k"), {"k": key})  # fmt: skip
        return found.one()


def test_a_secret_is_not_kept_and_its_retry_runs_nothing(api: Api) -> None:
    """A new API key's token and a new webhook's secret are not stored: a retry is a 409 that
    says the first request succeeded, and creates nothing."""

    def count(what: str) -> int:
        return len(api.client.get(f"/v1/admin/{what}", headers=api.admin).json()["items"])

    k, body = _new(), {"project": "gamma", "role": "member"}
    before = count("keys")
    first = api.post("/v1/admin/keys", api.admin, k, json=body)
    assert first.status_code == 201 and first.json()["token"]
    row = _row(api, k)
    assert (row.state, row.status_code, row.response_body) == ("not_kept", 201, None)
    assert first.json()["token"] not in str(row)
    again = api.post("/v1/admin/keys", api.admin, k, json=body)
    assert again.status_code == 409 and _type(again) == "idempotency_response_not_kept"
    assert "succeeded (status 201)" in again.json()["detail"][0]["msg"]
    assert first.json()["token"] not in again.text and count("keys") == before + 1
    # An error of such a route shows no secret: kept and replayed.
    k, bad = _new(), {"project": "gamma", "role": "owner"}
    assert api.post("/v1/admin/keys", api.admin, k, json=bad).status_code == 422
    assert api.post("/v1/admin/keys", api.admin, k, json=bad).headers[REPLAYED] == "true"

    k, hook = _new(), {"url": "http://127.0.0.1:9/secret"}
    made = api.post("/v1/webhooks", api.alpha, k, json=hook)
    assert made.status_code == 201 and _row(api, k).response_body is None
    r = api.post("/v1/webhooks", api.alpha, k, json=hook)
    assert r.status_code == 409 and _type(r) == "idempotency_response_not_kept"
    assert made.json()["secret"] not in r.text
    api.client.delete(f"/v1/webhooks/{made.json()['id']}", headers=api.alpha)


def test_a_response_over_the_limit_is_not_kept_and_not_run_again(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        api.ctx,
        "settings",
        api.ctx.settings.model_copy(update={"idempotency_max_response_bytes": 64}),
    )
    before, k = api.total(api.alpha), _new()
    assert api.post("/v1/models", api.alpha, k, json=MODEL).status_code == 201
    assert _row(api, k).response_body is None
    r = api.post("/v1/models", api.alpha, k, json=MODEL)
    assert r.status_code == 409 and _type(r) == "idempotency_response_not_kept", r.text
    assert api.total(api.alpha) == before + 1


def test_other_keys_and_no_key_create_each_time(api: Api) -> None:
    before = api.total(api.alpha)
    ids = {api.post("/v1/models", api.alpha, k, json=MODEL).json()["id"] for k in (_new(), _new())}
    ids |= {api.post("/v1/models", api.alpha, json=MODEL).json()["id"] for _ in range(2)}
    assert len(ids) == 4 and api.total(api.alpha) == before + 4


def test_a_key_belongs_to_its_project(api: Api) -> None:
    k = _new()
    a = api.post("/v1/models", api.alpha, k, json=MODEL)
    b = api.post("/v1/models", api.beta, k, json=MODEL)
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]
    assert REPLAYED not in b.headers
    # beta's different body with the same key is not alpha's business either
    assert api.post("/v1/models", api.beta, k, json=MODEL).headers[REPLAYED] == "true"


def test_a_422_is_replayed_and_a_403_is_not_kept(api: Api) -> None:
    k, bad = _new(), {"config": {"class_name": "Nope"}}
    first = api.post("/v1/models", api.alpha, k, json=bad)
    again = api.post("/v1/models", api.alpha, k, json=bad)
    assert first.status_code == again.status_code == 422 and again.json() == first.json()
    assert again.headers[REPLAYED] == "true"
    k = _new()
    assert api.post("/v1/models", api.alpha_viewer, k, json=MODEL).status_code == 403
    r = api.post("/v1/models", api.alpha, k, json=MODEL)
    assert r.status_code == 201 and REPLAYED not in r.headers


def test_a_409_and_a_500_free_the_key(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = api.post("/v1/webhooks", api.alpha, json={"url": "http://127.0.0.1:9/h"})
    assert hook.status_code == 201, hook.text  # the project's one webhook
    k, body = _new(), {"url": "http://127.0.0.1:9/other"}
    assert api.post("/v1/webhooks", api.alpha, k, json=body).status_code == 409
    api.client.delete(f"/v1/webhooks/{hook.json()['id']}", headers=api.alpha)
    r = api.post("/v1/webhooks", api.alpha, k, json=body)
    assert r.status_code == 201 and REPLAYED not in r.headers
    api.client.delete(f"/v1/webhooks/{r.json()['id']}", headers=api.alpha)

    from app.models import service

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    k = _new()
    with monkeypatch.context() as patch:
        patch.setattr(service, "create_model", broken)
        with pytest.raises(RuntimeError):
            api.post("/v1/models", api.alpha, k, json=MODEL)
    r = api.post("/v1/models", api.alpha, k, json=MODEL)
    assert r.status_code == 201 and REPLAYED not in r.headers


def test_concurrent_requests_with_one_key_create_once(api: Api) -> None:
    before, k = api.total(api.alpha), _new()
    start = threading.Barrier(6)

    def send(_: int) -> Any:
        start.wait()
        return api.post("/v1/models", api.alpha, k, json=MODEL)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, range(6)))
    created = {r.json()["id"] for r in answers if r.status_code == 201}
    busy = [r for r in answers if r.status_code == 409]
    assert len(created) == 1 and len(busy) + sum(r.status_code == 201 for r in answers) == 6
    for r in busy:
        assert r.json()["detail"][0]["type"] == "idempotency_key_in_use"
        assert r.headers["retry-after"] == "1"
    assert api.total(api.alpha) == before + 1


def test_a_running_key_is_busy_and_an_abandoned_one_is_taken_over(api: Api) -> None:
    pid = _project_id(api, "alpha")
    k = _new()
    held = keys.claim(api.ctx, project_id=pid, key=k, key_id=None, method="POST",
                      path="/v1/models")  # fmt: skip
    assert isinstance(held, keys.Held)
    r = api.post("/v1/models", api.alpha, k, json=MODEL)
    assert r.status_code == 409 and r.headers["retry-after"] == "1", r.text
    _set(api, k, locked_until=utcnow() - timedelta(seconds=1))  # its process died
    r = api.post("/v1/models", api.alpha, k, json=MODEL)
    assert r.status_code == 201 and REPLAYED not in r.headers
    # The old holder's late outcome cannot overwrite the new one's.
    keys.release(api.ctx, project_id=pid, key=k, owner=held.owner)
    assert api.post("/v1/models", api.alpha, k, json=MODEL).headers[REPLAYED] == "true"


def test_expired_keys_are_ignored_and_pruned(api: Api) -> None:
    k = _new()
    first = api.post("/v1/models", api.alpha, k, json=MODEL)
    _set(api, k, expires_at=utcnow() - timedelta(seconds=1))
    again = api.post("/v1/models", api.alpha, k, json={**MODEL, "seed": 5})
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]
    _set(api, k, expires_at=utcnow() - timedelta(seconds=1))
    assert keys.prune(api.ctx) >= 1
    with api.ctx.engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM idempotency_keys WHERE key = :k"), {"k": k})
        assert left.scalar_one() == 0


def test_a_bad_key_is_a_422_naming_the_header(api: Api) -> None:
    for value in ("x" * 256, "", "caf\u00e9".encode(), " padded\t"):
        r = api.post("/v1/models", api.alpha, headers={KEY: value}, json=MODEL)  # type: ignore[dict-item]
        assert r.status_code == 422, (value, r.text)
        assert r.json()["detail"][0]["loc"] == ["header", KEY]
    ok = api.post("/v1/models", api.alpha, "x" * 255, json=MODEL)
    assert ok.status_code == 201


def test_the_openapi_document_declares_the_header_on_posts(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            names = [p["name"] for p in op.get("parameters", [])]
            assert (KEY in names) == (method == "post" and path.startswith("/v1/")), (path, method)
            assert KEY not in names or "409" in op["responses"], (path, method)


def _npy(size: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(size // 4, dtype=np.float32).reshape(-1, 1))
    return buf.getvalue()


def test_a_streamed_upload_is_deduplicated_without_being_held(api: Api) -> None:
    """The upload's body reaches the app in chunks (as a server streams it); a replay hashes
    the retried body chunk by chunk and holds none of it."""
    body, chunk, k = _npy(16 << 20), 256 << 10, _new()
    before = api.total(api.alpha, "datasets")

    async def upload() -> tuple[int, dict[bytes, bytes], bytes]:
        chunks = (body[i : i + chunk] for i in range(0, len(body), chunk))  # made as read
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            piece = next(chunks, None)
            return {"type": "http.request", "body": piece or b"", "more_body": piece is not None}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        headers = [(n.lower().encode(), v.encode()) for n, v in
                   {**api.alpha, KEY: k, "Content-Type": "application/x-npy",
                    "Transfer-Encoding": "chunked"}.items()]  # fmt: skip
        scope = {"type": "http", "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": "/v1/datasets", "raw_path": b"/v1/datasets", "query_string": b"",
                 "root_path": "", "headers": headers, "client": ("testclient", 1),
                 "server": ("testserver", 80), "asgi": {"version": "3.0"}}  # fmt: skip
        await api.client.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], dict(start["headers"]), payload

    portal = api.client.portal  # type: ignore[attr-defined]
    status, headers, first = portal.call(upload)
    assert status == 201, first
    tracemalloc.start()
    try:
        status, headers, again = portal.call(upload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 201 and again == first and headers[b"idempotent-replayed"] == b"true"
    assert peak < len(body) // 4, peak  # the 16 MiB body was never held whole
    # In one piece, the same bytes are the same request.
    one = api.post("/v1/datasets", api.alpha, k, content=body,
                   headers={"Content-Type": "application/x-npy"})  # fmt: skip
    assert one.status_code == 201 and one.content == first and one.headers[REPLAYED] == "true"
    assert api.total(api.alpha, "datasets") == before + 1


def _project_id(api: Api, name: str) -> uuid.UUID:
    with api.ctx.engine.connect() as conn:
        found = conn.execute(text("SELECT id FROM projects WHERE name = :n"), {"n": name})
        value = found.scalar_one()
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _set(api: Api, key: str, **values: Any) -> None:
    from sqlalchemy import update

    from app.db.models import IdempotencyKeyRow

    with api.ctx.engine.begin() as conn:
        conn.execute(update(IdempotencyKeyRow).where(IdempotencyKeyRow.key == key).values(**values))


def test_a_long_request_renews_its_key(api: Api) -> None:
    """A request that runs past a third of IDEMPOTENCY_IN_PROGRESS_S renews its key, so that a
    retry is not let in as if the first request had died; even while every thread of the
    default pool (which runs the sync routes) is busy."""
    import anyio

    from app.api.idempotency import Idempotency
    from app.auth.schemas import Principal
    from app.db.models import DEFAULT_PROJECT_ID, Role

    settings = api.ctx.settings.model_copy(update={"idempotency_in_progress_s": 3.0})
    ctx = SimpleNamespace(settings=settings, sessions=api.ctx.sessions)
    k, seen = _new(), []

    def locked_until() -> Any:
        with api.ctx.engine.connect() as conn:
            found = conn.execute(text("SELECT locked_until FROM idempotency_keys WHERE key = :k"),
                                 {"k": k})  # fmt: skip
            return found.scalar_one()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        seen.append(locked_until())
        pool = anyio.to_thread.current_default_thread_limiter()
        pool.total_tokens = 1
        async with pool:  # the pool is full
            await anyio.sleep(1.6)  # past one renewal (every 1 s)
            seen.append(locked_until())
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    principal = Principal(key_id=None, key_prefix=None, role=Role.admin,
                          project_id=DEFAULT_PROJECT_ID, project_name="default")  # fmt: skip
    scope = {"type": "http", "method": "POST", "path": "/v1/models", "query_string": b"",
             "headers": [(b"idempotency-key", k.encode())], "app": SimpleNamespace(
                 state=SimpleNamespace(ctx=ctx)), "state": {"principal": principal}}  # fmt: skip
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    anyio.run(Idempotency(slow), scope, receive, send)
    assert sent[0]["status"] == 201 and seen[1] > seen[0], seen
