"""The OpenAPI document's conventions, applied to every route at once: each operation's
`operationId` is its endpoint function's name; every error, binary and event-stream response
(and binary request body) that declares no example gets one; and the typed schemas of Keras
objects (app.models.json_schemas) are added to the components the fields refer to.

Success bodies and JSON request bodies carry their examples on their schemas (the pydantic
models' `json_schema_extra`); what is filled in here is what is the same across routes: the
`{"detail": [{loc, msg, type}]}` error of each status code, and a placeholder that says what a
file body holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.api.errors import error_body
from app.models import json_schemas

ERROR_SCHEMAS = frozenset({"#/components/schemas/ErrorOut",
                           "#/components/schemas/HTTPValidationError"})  # fmt: skip
ID = "7d0c4b7e-5a8e-4f3e-9d55-2f6f0d7f1a21"
ERROR_EXAMPLES: dict[int, dict[str, object]] = {
    400: error_body([], "bad request", "bad_request"),
    401: error_body(
        ["header", "Authorization"],
        "an API key is required: send `Authorization: Bearer <key>`",
        "unauthorized",
    ),
    403: error_body([], "this key's role may not do this", "forbidden"),
    404: error_body(["path"], f"no such model: {ID}", "not_found"),
    409: error_body([], "a fit job is already queued or running for this model", "conflict"),
    413: error_body(["body"], "the request body is larger than 2000000 bytes", "payload_too_large"),
    415: error_body(
        ["header", "content-type"], "must be application/json", "unsupported_media_type"
    ),
    429: error_body([], "too many requests; try again in 1 s", "quota_exceeded"),
    503: error_body([], "the database is unavailable; try again", "unavailable"),
}
BODY_422 = error_body(["body", "epochs"], "Input should be greater than or equal to 1",
                      "greater_than_equal")  # fmt: skip
PARAM_422 = error_body(["path", "model_id"], "Input should be a valid UUID", "uuid_parsing")
QUERY_422 = error_body(["query", "limit"], "Input should be less than or equal to 100",
                       "less_than_equal")  # fmt: skip
# What a file body holds, by media type (Swagger UI offers a file picker for these).
FILES = {
    "application/x-npy": "an .npy file (numpy.save)",
    "application/npy": "an .npy file (numpy.save)",
    "application/x-npz": "an .npz file (numpy.savez)",
    "application/npz": "an .npz file (numpy.savez)",
    "application/zip": "a zip file (.npz or .keras)",
    "application/x-keras": "a .keras file (model.save)",
    "application/octet-stream": "the file's bytes",
    "application/vnd.apache.parquet": "a Parquet file",
    "application/parquet": "a Parquet file",
    "application/x-parquet": "a Parquet file",
}
CSV_EXAMPLE = "x0,x1,label\n0.5,1.25,1\n-0.75,0.0,0\n"
EVENTS_EXAMPLE = (
    'event: epoch\nid: 0\ndata: {"epoch": 0, "logs": {"loss": 0.69, "accuracy": 0.57}}\n\n'
    'event: status\ndata: {"status": "succeeded"}\n\n'
)


def operation_id(route: APIRoute) -> str:
    """FastAPI's `generate_unique_id_function`: the endpoint function's name."""
    return route.name


def _error_example(status: int, operation: dict[str, Any]) -> dict[str, object]:
    if status != 422:
        return ERROR_EXAMPLES.get(status) or error_body([], "error", "http_error")
    if "requestBody" in operation:
        return BODY_422
    params = operation.get("parameters", [])
    return PARAM_422 if any(p.get("in") == "path" for p in params) else QUERY_422


def _has_example(media: dict[str, Any]) -> bool:
    schema = media.get("schema", {})
    return bool({"example", "examples"} & (media.keys() | schema.keys()))


def _file_example(media_type: str) -> str | None:
    if media_type == "text/event-stream":
        return EVENTS_EXAMPLE
    if media_type in ("text/csv", "application/csv"):
        return CSV_EXAMPLE
    described = FILES.get(media_type)
    return described


def _fill(content: dict[str, Any], example_for: Callable[[str, dict[str, Any]], Any]) -> None:
    for media_type, media in content.items():
        if _has_example(media):
            continue
        example = example_for(media_type, media)
        if example is not None:
            media["example"] = example
            if not media.get("schema") and media_type in FILES:
                media["schema"] = {"type": "string", "format": "binary"}


def add_examples(document: dict[str, Any]) -> dict[str, Any]:
    """Fill in the shared examples, in place; returns `document`."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            body = operation.get("requestBody", {}).get("content", {})
            _fill(body, lambda media_type, _: _file_example(media_type))
            for code, response in operation.get("responses", {}).items():
                status = int(code) if str(code).isdigit() else 0

                def example_for(media_type: str, media: dict[str, Any], status: int = status,
                                operation: dict[str, Any] = operation) -> Any:  # fmt: skip
                    if media.get("schema", {}).get("$ref") in ERROR_SCHEMAS:
                        return _error_example(status, operation)
                    return _file_example(media_type)

                _fill(response.get("content", {}), example_for)
    return document


def add_components(document: dict[str, Any]) -> dict[str, Any]:
    """The typed schemas of Keras objects (app.models.json_schemas) that fields refer to, in
    place; returns `document`."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in json_schemas.components().items():
        schemas.setdefault(name, schema)
    return document


def install(app: FastAPI) -> None:
    """The document FastAPI builds (and caches), with the shared examples and the typed schemas
    of Keras objects added."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_components(add_examples(build()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
