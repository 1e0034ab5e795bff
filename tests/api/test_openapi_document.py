"""The OpenAPI document as client generators read it: every operation has a stable
operationId (its endpoint function's name), every request body and every response of every
status code and media type has an example, and the compile, callbacks, model config and dataset
reference fields are typed schemas, not free-form objects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def app_and_spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict]]:
    tmp: Path = tmp_path_factory.mktemp("openapi")
    app = create_app(Settings(data_dir=tmp, database_url=None, redis_url=None))
    with TestClient(app) as client:
        yield app, client.get("/openapi.json").json()


@pytest.fixture(scope="module")
def spec(app_and_spec: tuple[Any, dict]) -> dict:
    return app_and_spec[1]


def operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield method.upper(), path, op


def resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def has_example(spec: dict, media: dict) -> bool:
    """An example on the media type object, or on its schema (followed through $ref, and through
    anyOf/oneOf when every member but null has one)."""
    if "example" in media or "examples" in media:
        return True
    schema = resolve(spec, media.get("schema", {}))
    if "example" in schema or "examples" in schema:
        return True
    members = [m for m in schema.get("anyOf", schema.get("oneOf", [])) if m.get("type") != "null"]
    return bool(members) and all(has_example(spec, {"schema": m}) for m in members)


def test_every_operation_id_is_its_endpoint_function_name(app_and_spec: tuple[Any, dict]) -> None:
    app, spec = app_and_spec
    ids = [op.get("operationId") for _, _, op in operations(spec)]
    assert len(ids) >= 40
    assert all(isinstance(i, str) and SNAKE.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)
    healthz = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == "/healthz")
    assert healthz.endpoint.__name__ == "healthz" and "healthz" in ids
    by_route = {(m, p): op["operationId"] for m, p, op in operations(spec)}
    assert by_route["POST", "/v1/models"] == "create_model"
    assert by_route["POST", "/v1/models/{model_id}/fit"] == "fit_model"
    assert by_route["GET", "/v1/jobs/{job_id}/events"] == "stream_job_events"


def test_every_request_body_and_response_has_an_example(spec: dict) -> None:
    missing = []
    for method, path, op in operations(spec):
        content = op.get("requestBody", {}).get("content", {})
        assert not op.get("requestBody") or content, (method, path)
        for media_type, media in content.items():
            if not has_example(spec, media):
                missing.append(f"{method} {path} request {media_type}")
        for status, response in op["responses"].items():
            for media_type, media in response.get("content", {}).items():
                if not has_example(spec, media):
                    missing.append(f"{method} {path} {status} {media_type}")
    assert not missing, "\n".join(missing)


def test_error_examples_say_what_the_status_means(spec: dict) -> None:
    op = spec["paths"]["/v1/models/{model_id}/compile"]["post"]["responses"]
    for status, kind in (("404", "not_found"), ("409", "conflict"), ("413", "payload_too_large"),
                         ("422", "greater_than_equal")):  # fmt: skip
        example = op[status]["content"]["application/json"]["example"]
        assert example["detail"][0]["type"] == kind, (status, example)
    weights = spec["paths"]["/v1/models/{model_id}/weights"]["get"]["responses"]["200"]
    assert weights["content"]["application/octet-stream"]["schema"]["format"] == "binary"
    upload = spec["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]
    assert upload["text/csv"]["example"].startswith("x0,x1,label\n")
    assert upload["application/x-npz"]["example"] == "an .npz file (numpy.savez)"
