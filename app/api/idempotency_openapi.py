"""The Idempotency-Key header (app.api.idempotency) in the OpenAPI document: declared on every
POST under /v1, with the 409s it may bring."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.api.idempotency import HEADER, LOC, MAX_KEY, PREFIX

PARAMETER = {
    "name": HEADER, "in": "header", "required": False,
    "description": "Any unique string (a UUID) that makes a retried POST safe: the same key "
    "with the same request replays the first response (with `Idempotent-Replayed: true`) "
    "instead of running again; the key with another request or API key is a 409 "
    "`idempotency_key_reused`, while the first is still running a 409 "
    "`idempotency_key_in_use`, and after a first response that was not kept (it showed a "
    "secret or was too large) a 409 `idempotency_response_not_kept`. Keys are kept "
    "IDEMPOTENCY_KEEP_S (24 h) per project.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY,
               "pattern": r"^[!-~]([ -~]*[!-~])?$", "title": HEADER},
    "example": "5f0c2d9e-8a41-4b7e-9c3a-2e6f1b7d4a90",
}  # fmt: skip


CONFLICT = {
    "description": "Conflict. With an Idempotency-Key: `idempotency_key_reused` (the key was "
    "sent with another request or by another API key), `idempotency_key_in_use` (its first "
    "request still runs; Retry-After: 1) or `idempotency_response_not_kept` (its first request "
    "ended, but its response cannot be shown again)",
    "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/ErrorOut"},
        "example": {"detail": [{"loc": LOC, "type": "idempotency_key_reused",
                                "msg": "this Idempotency-Key was used with a different "
                                "request (method, path, body, Content-Type or Accept) or by "
                                "another API key; send a new key for a new request"}]},
    }},
}  # fmt: skip


def document(app: FastAPI) -> None:
    """Declares the optional header, and the 409 it may bring, on every POST under /v1 of the
    OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        has_error = "ErrorOut" in schema.get("components", {}).get("schemas", {})
        for path, item in schema.get("paths", {}).items():
            operation = item.get("post") if path.startswith(PREFIX) else None
            if isinstance(operation, dict):
                parameters = operation.setdefault("parameters", [])
                if not any(p.get("name") == HEADER for p in parameters):
                    parameters.append(dict(PARAMETER))
                if has_error:
                    operation.setdefault("responses", {}).setdefault("409", CONFLICT)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
