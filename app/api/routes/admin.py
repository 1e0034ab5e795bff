"""Routes of /v1/admin, for admin keys only: API keys (create, list, revoke), projects with
their quotas and usage, and the audit log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, status
from pydantic import AwareDatetime

from app.api.audit import AuditWriter
from app.api.auth import Caller
from app.api.deps import Ctx
from app.api.errors import ErrorOut
from app.api.idempotency import reveals_secret
from app.auth import service
from app.auth.schemas import (
    PROJECT_NAME,
    AuditOut,
    AuditPage,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyOut,
    ProjectList,
    ProjectOut,
    QuotaUpdate,
)

router = APIRouter(prefix="/v1/admin", tags=["admin"])
E404: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "Not found"}}
ProjectQuery = Annotated[
    str | None, Query(pattern=PROJECT_NAME.pattern, description="Only this project's")
]


@router.post(
    "/keys",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    summary="Create an API key (and its project, if new); the token is shown only here",
    dependencies=[Depends(reveals_secret)],
)
def create_key(ctx: Ctx, who: Caller, body: KeyCreate) -> KeyCreated:
    return service.create_key(ctx, project=body.project, role=body.role, name=body.name)


@router.get("/keys", response_model=KeyList, responses=E404, summary="List API keys")
def list_keys(ctx: Ctx, who: Caller, project: ProjectQuery = None) -> KeyList:
    return KeyList(items=service.list_keys(ctx, project=project))


@router.post(
    "/keys/{key}/revoke",
    response_model=KeyOut,
    responses=E404,
    summary="Revoke an API key, by id or visible prefix; it is refused from then on",
)
def revoke_key(
    ctx: Ctx, who: Caller, key: Annotated[str, Path(min_length=1, max_length=64)]
) -> KeyOut:
    return service.revoke_key(ctx, key=key)


@router.get("/projects", response_model=ProjectList, summary="Projects with their quotas and usage")
def list_projects(ctx: Ctx, who: Caller) -> ProjectList:
    return ProjectList(items=service.list_projects(ctx))


@router.patch(
    "/projects/{project}/quotas",
    response_model=ProjectOut,
    responses=E404,
    summary="Set a project's own quotas (null: back to the setting)",
)
def set_project_quotas(
    ctx: Ctx,
    who: Caller,
    project: Annotated[str, Path(pattern=PROJECT_NAME.pattern)],
    body: QuotaUpdate,
) -> ProjectOut:
    return service.set_quotas(ctx, project=project, body=body)


@router.get(
    "/audit",
    response_model=AuditPage,
    responses=E404,
    summary="The audit log, newest first: who created, changed, deleted, ran or downloaded what",
)
def list_audit_entries(
    ctx: Ctx,
    who: Caller,
    request: Request,
    project: ProjectQuery = None,
    since: Annotated[
        AwareDatetime | None, Query(description="From this time on (with its UTC offset)")
    ] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    writer: AuditWriter | None = getattr(request.app.state, "audit_writer", None)
    if writer is not None:
        writer.flush()  # the rows of requests that have ended, this one's caller's included
    rows = service.audit_page(ctx, project=project, since=since, before_id=before_id, limit=limit)
    items = [AuditOut.of(r) for r in rows]
    return AuditPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)
