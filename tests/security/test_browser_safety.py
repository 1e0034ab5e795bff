"""What a browser can be made to send, and what it is told: the CORS "simple" content types
refused on every route that changes state (each operation of the OpenAPI document is tried), the
upload routes held to their declared types, NUL and non-UTF-8 text refused in the path, the query
and the headers the app reads, CORS only for the origins CORS_ORIGINS names, and the security
headers on every response without breaking the event stream, downloads or /docs."""

from __future__ import annotations

import asyncio
import io
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError
from starlette.types import Message, Receive, Scope, Send

from app.api.security_headers import API_CSP, COMMON, SecurityHeaders
from app.core.config import Settings
from tests.api.conftest import serve
from tests.security.common import new_model, total
from tests.support import scenario
from tests.support.sse import parse_events

SIMPLE = ["text/plain", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"]
ORIGIN = "https://app.example"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with serve(tmp_path) as c:
        yield c


@pytest.fixture
def cors_client(tmp_path: Path) -> Iterator[TestClient]:
    with serve(tmp_path, cors_origins=[ORIGIN]) as c:
        yield c


def _refused(r: Any, status: int, loc: list[str | int]) -> None:
    assert r.status_code == status, r.text
    assert r.json()["detail"][0]["loc"] == loc, r.text


def _npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


# -- content types -------------------------------------------------------------------------------
def test_every_state_changing_operation_refuses_the_simple_types(client: TestClient) -> None:
    """Walks the OpenAPI document, so a new route cannot be missed."""
    paths = client.get("/openapi.json").json()["paths"]
    tried, wrong = 0, []
    for template, item in paths.items():
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), template)
        for method in item:
            if method.upper() not in ("POST", "PUT", "PATCH", "DELETE"):
                continue
            for media in SIMPLE:
                tried += 1
                r = client.request(method.upper(), path, content=b'{"x": 1}',
                                   headers={"content-type": media})  # fmt: skip
                if r.status_code != 415 or r.json()["detail"][0]["loc"] != [
                    "header", "content-type",
                ]:  # fmt: skip
                    wrong.append((method, template, media, r.status_code))
    assert tried >= 3 * 15, tried
    assert wrong == []
    assert total(client, "models") == 0 and total(client, "datasets") == 0


UPLOADS = {
    ("POST", "/v1/models/import"): {
        "application/octet-stream", "application/zip", "application/x-keras",
    },
    ("PUT", "/v1/models/{model_id}/weights"): {
        "application/octet-stream", "application/x-npz", "application/zip", "application/json",
    },
    ("POST", "/v1/models/{model_id}/predict"): {
        "application/json", "application/x-npy", "application/npy", "application/x-npz",
        "application/zip", "application/octet-stream",
    },
    # The Open Inference Protocol's binary tensor data (and, marked, a body of no type).
    ("POST", "/v2/models/{model_id}/infer"): {"application/json", "application/octet-stream"},
}  # fmt: skip


def test_the_upload_routes_declare_their_binary_types(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for (method, template), types in UPLOADS.items():
        declared = set(paths[template][method.lower()]["requestBody"]["content"])
        assert declared == types, template
    datasets = set(paths["/v1/datasets"]["post"]["requestBody"]["content"])
    assert {"text/csv", "application/json", "application/x-npy", "application/x-npz",
            "application/vnd.apache.parquet", "application/octet-stream"} <= datasets  # fmt: skip
    assert not datasets & {"text/plain", "multipart/form-data"}


@pytest.mark.parametrize("media", ["text/csv", "application/json", "application/xml", None])
def test_import_takes_only_its_binary_types(client: TestClient, media: str | None) -> None:
    headers = {} if media is None else {"content-type": media}
    r = client.post("/v1/models/import", content=b"PK\x03\x04", headers=headers)
    _refused(r, 415, ["header", "content-type"])
    msg = r.json()["detail"][0]["msg"]
    assert "application/octet-stream" in msg and "application/zip" in msg, msg
    assert r.json()["detail"][0]["type"] == "unsupported_media_type"


@pytest.mark.parametrize("media", ["application/octet-stream", "application/zip"])
def test_import_reads_its_binary_types(client: TestClient, media: str) -> None:
    r = client.post("/v1/models/import", content=b"not a zip", headers={"content-type": media})
    assert r.status_code == 422, r.text  # read, and refused by the reader, not by its type


def test_a_json_body_needs_its_content_type(client: TestClient) -> None:
    body = b'{"config": {"class_name": "Sequential", "config": {"layers": []}}}'
    for headers in ({}, {"content-type": "text/plain"}, {"content-type": "application/xml"}):
        r = client.post("/v1/models", content=body, headers=headers)
        _refused(r, 415, ["header", "content-type"])
        assert "application/json" in r.json()["detail"][0]["msg"]
    assert total(client, "models") == 0


class Body(BaseModel):
    name: str


def test_fastapi_alone_does_not_read_text_plain_as_json() -> None:
    """Below the guard, FastAPI itself never parses a text/plain (or typeless) body as JSON."""
    app = FastAPI()

    @app.post("/echo")
    def echo(body: Body) -> Body:
        return body

    with TestClient(app) as c:
        assert c.post("/echo", json={"name": "a"}).status_code == 200
        for headers in ({"content-type": "text/plain"}, {}):
            r = c.post("/echo", content=b'{"name": "a"}', headers=headers)
            assert r.status_code == 422, r.text


def test_binary_predict_weights_and_datasets_still_work(client: TestClient) -> None:
    model_id = new_model(client)
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(-1, 1)
    r = client.post(f"/v1/models/{model_id}/predict", content=_npy(x),
                    headers={"content-type": "application/x-npy"})  # fmt: skip
    assert r.status_code == 200, r.text
    r = client.post(f"/v1/models/{model_id}/predict", content=_npy(x),
                    headers={"content-type": "text/plain"})  # fmt: skip
    _refused(r, 415, ["header", "content-type"])

    weights = client.get(f"/v1/models/{model_id}/weights").content
    for media in ("application/octet-stream", "application/x-npz"):
        r = client.put(f"/v1/models/{model_id}/weights", content=weights,
                       headers={"content-type": media})  # fmt: skip
        assert r.status_code == 200, r.text
    r = client.put(f"/v1/models/{model_id}/weights", content=weights)
    _refused(r, 415, ["header", "content-type"])

    csv = b"a,b\n1,2\n3,4\n"
    r = client.post("/v1/datasets", content=csv, headers={"content-type": "text/csv"})
    assert r.status_code == 201, r.text
    r = client.post("/v1/datasets?format=csv", content=csv,
                    headers={"content-type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 201, r.text
    for media in ("text/plain", None):
        headers = {} if media is None else {"content-type": media}
        r = client.post("/v1/datasets?format=csv", content=csv, headers=headers)
        _refused(r, 415, ["header", "content-type"])
    assert total(client, "datasets") == 2


def test_routes_without_a_body_refuse_only_the_simple_types(client: TestClient) -> None:
    missing = uuid.uuid4()
    assert client.post(f"/v1/jobs/{missing}/cancel").status_code == 404
    r = client.post(f"/v1/jobs/{missing}/cancel", headers={"content-type": "application/json"})
    assert r.status_code == 404, r.text
    r = client.post(f"/v1/jobs/{missing}/cancel", headers={"content-type": "text/plain"})
    _refused(r, 415, ["header", "content-type"])


# -- text that is not text -----------------------------------------------------------------------
NOT_TEXT = {"NUL": "%00", "lone surrogate": "%ED%A0%80", "truncated": "%C3"}


@pytest.mark.parametrize("bad", NOT_TEXT.values(), ids=list(NOT_TEXT))
def test_query_values_and_names_must_be_text(client: TestClient, bad: str) -> None:
    r = client.post(f"/v1/models/import?name=a{bad}b", content=b"PK",
                    headers={"content-type": "application/octet-stream"})  # fmt: skip
    _refused(r, 422, ["query", "name"])
    r = client.post(f"/v1/datasets?format=json&description={bad}", json={"arrays": {"x": [1.0]}})
    _refused(r, 422, ["query", "description"])
    _refused(client.get(f"/v1/models?limit=1{bad}"), 422, ["query", "limit"])
    r = client.get(f"/v1/models?a{bad}=1")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][0] == "query", r.text
    assert total(client, "models") == 0 and total(client, "datasets") == 0


def test_text_that_is_text_passes(client: TestClient) -> None:
    # U+FFFD itself and other non-ASCII UTF-8 are text.
    r = client.post("/v1/datasets?format=json&name=caf%C3%A9%EF%BF%BD",
                    json={"arrays": {"x": [1.0]}})  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "café\ufffd"


@pytest.mark.parametrize("bad", NOT_TEXT.values(), ids=list(NOT_TEXT))
def test_path_parameters_must_be_text(client: TestClient, bad: str) -> None:
    _refused(client.get(f"/v1/models/ab{bad}c"), 422, ["path", "model_id"])
    _refused(client.delete(f"/v1/models/ab{bad}c"), 422, ["path", "model_id"])
    r = client.get(f"/v1/datasets/{uuid.uuid4()}/arrays/x{bad}")
    _refused(r, 422, ["path", "name"])
    _refused(client.get(f"/v1/nothing{bad}"), 422, ["path"])


def _raw(client: TestClient, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Any:
    """(status, JSON body) of a request whose header bytes reach the app as given (the test
    client re-encodes header values as UTF-8)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }  # fmt: skip
    sent = asyncio.run(_drive(client.app, scope))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


@pytest.mark.parametrize("bad", [b"1\x00", b"1\xed\xa0\x80", b"\xc3"], ids=list(NOT_TEXT))
def test_header_values_the_app_reads_must_be_text(client: TestClient, bad: bytes) -> None:
    """Refused before any route (or authentication) reads them."""
    events = f"/v1/jobs/{uuid.uuid4()}/events"
    for method, path, name in [
        ("GET", events, b"last-event-id"), ("GET", "/v1/models", b"authorization"),
        ("GET", "/v1/models", b"idempotency-key"), ("GET", "/v1/models", b"x-request-id"),
        ("GET", "/v1/models", b"accept"), ("POST", "/v1/models", b"content-type"),
    ]:  # fmt: skip
        status, body = _raw(client, method, path, [(name, b"Bearer " + bad)])
        assert status == 422, (name, body)
        assert body["detail"][0]["loc"] == ["header", name.decode()], body
    assert total(client, "models") == 0


def test_nul_in_a_header_through_the_test_client(client: TestClient) -> None:
    r = client.get(f"/v1/jobs/{uuid.uuid4()}/events", headers={"last-event-id": "1\x00"})
    _refused(r, 422, ["header", "last-event-id"])


# -- CORS ----------------------------------------------------------------------------------------
PREFLIGHT = {
    "origin": ORIGIN,
    "access-control-request-method": "PUT",
    "access-control-request-headers": "authorization, content-type, idempotency-key",
}


def test_no_cors_headers_by_default(client: TestClient) -> None:
    r = client.options("/v1/models", headers=PREFLIGHT)
    assert not [h for h in r.headers if h.startswith("access-control-")], r.headers
    r = client.get("/healthz", headers={"origin": ORIGIN})
    assert "access-control-allow-origin" not in r.headers


def test_cors_for_the_configured_origins(cors_client: TestClient) -> None:
    r = cors_client.options("/v1/models/x/weights", headers=PREFLIGHT)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert {"PUT", "POST", "DELETE", "GET"} <= set(
        r.headers["access-control-allow-methods"].replace(" ", "").split(",")
    )
    allowed = r.headers["access-control-allow-headers"].lower()
    for header in ("authorization", "content-type", "idempotency-key", "last-event-id",
                   "x-request-id"):  # fmt: skip
        assert header in allowed
    assert "access-control-allow-credentials" not in r.headers

    other = cors_client.options(
        "/v1/models", headers={**PREFLIGHT, "origin": "https://evil.example"}
    )
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers

    r = cors_client.get("/healthz", headers={"origin": ORIGIN})
    assert r.headers["access-control-allow-origin"] == ORIGIN
    exposed = r.headers["access-control-expose-headers"].lower()
    for header in ("retry-after", "location", "www-authenticate", "content-disposition"):
        assert header in exposed
    r = cors_client.get("/healthz", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_a_refusal_is_readable_by_the_allowed_origin(cors_client: TestClient) -> None:
    r = cors_client.post("/v1/models/import", content=b"PK",
                         headers={"origin": ORIGIN, "content-type": "text/plain"})  # fmt: skip
    assert r.status_code == 415
    assert r.headers["access-control-allow-origin"] == ORIGIN


def test_cors_origins_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", " https://a.example, http://localhost:3000 ")
    assert Settings().cors_origins == ["https://a.example", "http://localhost:3000"]
    monkeypatch.setenv("CORS_ORIGINS", '["https://a.example"]')
    assert Settings().cors_origins == ["https://a.example"]
    monkeypatch.setenv("CORS_ORIGINS", "")
    assert Settings().cors_origins == []
    monkeypatch.delenv("CORS_ORIGINS")
    assert Settings().cors_origins == []
    for bad in ("https://a.example/", "a.example", "https://a.example/app"):
        with pytest.raises(ValidationError):
            Settings(cors_origins=[bad])


# -- security headers ----------------------------------------------------------------------------
def _has_security_headers(r: Any, csp: str | None = API_CSP) -> None:
    for name, value in COMMON.items():
        assert r.headers.get(name) == value, (r.request.url, name, r.headers)
    if csp is not None:
        assert r.headers.get("content-security-policy") == csp, r.request.url


def test_security_headers_on_every_kind_of_response(client: TestClient) -> None:
    model_id = new_model(client)
    responses = [
        client.get("/healthz"),
        client.get("/openapi.json"),
        client.get(f"/v1/models/{model_id}"),
        client.get(f"/v1/models/{uuid.uuid4()}"),  # 404
        client.get("/v1/models?limit=0"),  # 422
        client.put("/v1/models"),  # 405
        client.options("/v1/models"),  # 204
        client.post("/v1/models", content=b"{}", headers={"content-type": "text/plain"}),  # 415
    ]
    for r in responses:
        _has_security_headers(r)
    for r in responses[2:]:
        assert r.headers["cache-control"] == "no-store", r.request.url

    download = client.get(f"/v1/models/{model_id}/weights")
    assert download.status_code == 200
    _has_security_headers(download)
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.headers["content-type"] == "application/octet-stream"


def _sources(csp: str, directive: str) -> list[str]:
    for part in csp.split(";"):
        name, *sources = part.split()
        if name == directive:
            return sources
    return []


def test_the_docs_pages_load_from_this_origin_only(client: TestClient) -> None:
    """/docs and /redoc name no other origin and run no inline script: every script, stylesheet
    and icon is a file this server serves, which their policy allows ('self')."""
    for path in ("/docs", "/redoc"):
        r = client.get(path)
        assert r.status_code == 200
        csp = r.headers["content-security-policy"]
        _has_security_headers(r, csp=None)
        assert "frame-ancestors 'none'" in csp and csp.startswith("default-src 'none'")
        assert "http" not in csp, csp  # no CDN, no font host
        assert _sources(csp, "script-src") == ["'self'"]
        assert "'self'" in _sources(csp, "connect-src")  # /openapi.json
        assert "http://" not in r.text and "https://" not in r.text
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", r.text, re.S)
        assert scripts and all('src="/static/' in attrs and not body.strip()
                               for attrs, body in scripts), scripts  # fmt: skip
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', r.text)
        assert len(assets) >= 3, r.text
        for url in assets:
            asset = client.get(url.replace("&amp;", "&"))
            assert asset.status_code == 200, url
            # The URL carries the content hash: cached for good.
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            _has_security_headers(asset)


def test_a_static_file_without_its_hash_is_revalidated(client: TestClient) -> None:
    r = client.get("/static/vendor/swagger-ui/swagger-ui.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert r.headers["cache-control"] == "no-cache" and r.headers["etag"]
    again = client.get("/static/vendor/swagger-ui/swagger-ui.css?v=0",
                       headers={"if-none-match": r.headers["etag"]})  # fmt: skip
    assert again.status_code == 304 and again.headers["cache-control"] == "no-cache"
    assert client.get("/static/../main.py").status_code == 404
    assert client.get("/static/vendor/swagger-ui/swagger-ui.css.map").status_code == 404


def test_the_event_stream_keeps_its_headers_and_streams(client: TestClient) -> None:
    model_id = new_model(client)
    r = client.post(f"/v1/models/{model_id}/fit", json=scenario.fit_body(epochs=2))
    assert r.status_code == 202, r.text
    with client.stream("GET", f"/v1/jobs/{r.json()['id']}/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["cache-control"] == "no-cache"
        assert stream.headers["content-type"].startswith("text/event-stream")
        _has_security_headers(stream)
        chunks = list(stream.iter_text())
    events = parse_events("".join(chunks).split("\n\n"))
    assert [name for name, _ in events if name == "epoch"] == ["epoch", "epoch"]
    assert events[-1][0] == "status"


async def _drive(app: Any, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _headers(message: Message) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in message["headers"]}


def test_the_middleware_passes_each_chunk_on_at_once() -> None:
    """Nothing is buffered: the inner app's next chunk waits until the previous one is sent."""
    delivered: list[bytes] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"cache-control", b"no-cache")]})  # fmt: skip
        for piece in (b"one", b"two"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            assert delivered[-1] == piece  # already through the middleware
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def run() -> list[Message]:
        app = SecurityHeaders(inner)
        scope = {"type": "http", "method": "GET", "path": "/v1/jobs/x/events", "headers": []}

        async def receive() -> Message:
            return {"type": "http.request"}

        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and message["body"]:
                delivered.append(message["body"])

        await app(scope, receive, send)
        return sent

    sent = asyncio.run(run())
    assert delivered == [b"one", b"two"]
    assert _headers(sent[0])["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    ("headers", "cache_control"),
    [([], "no-store"), ([(b"etag", b'"v1"')], "private, no-cache"),
     ([(b"cache-control", b"max-age=60")], "max-age=60")],
)  # fmt: skip
def test_tenant_responses_are_not_stored_by_caches(
    headers: list[tuple[bytes, bytes]], cache_control: str
) -> None:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"{}"})

    scope = {"type": "http", "method": "GET", "path": "/v1/models", "headers": []}
    sent = asyncio.run(_drive(SecurityHeaders(inner), scope))
    assert _headers(sent[0])["cache-control"] == cache_control
    if not headers:  # only tenant data under /v1
        outside = asyncio.run(_drive(SecurityHeaders(inner), {**scope, "path": "/healthz"}))
        assert "cache-control" not in _headers(outside[0])


def test_a_header_the_route_set_is_kept() -> None:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-frame-options", b"SAMEORIGIN")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b""})

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    headers = _headers(asyncio.run(_drive(SecurityHeaders(inner), scope))[0])
    assert headers["x-frame-options"] == "SAMEORIGIN"
    assert headers["x-content-type-options"] == "nosniff"
