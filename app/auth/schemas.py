"""Who a request is (a Principal), and the admin routes' request and response bodies."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from app.db.models import ApiKeyRow, AuditRow, ProjectRow, Role
from app.db.scope import Scope
from app.runtime.schemas import Strict, strict_with_example, with_example

KEY_EXAMPLE: dict[str, Any] = {
    "id": "81978593-5cd2-4b81-9c30-d10106daf6ee", "prefix": "fitapi_cyh7yvbm",
    "project": "vision", "role": "member", "name": "ci",
    "created_at": "2026-12-07T14:35:16.878470Z", "revoked_at": None,
}  # fmt: skip
PROJECT_EXAMPLE: dict[str, Any] = {
    "id": "5c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "name": "vision",
    "created_at": "2026-12-07T14:35:16.878470Z",
    "quotas": {"models": 200, "queued_jobs": 20, "running_jobs": 2,
               "stored_bytes": 10_000_000_000, "requests_per_s": 20.0},
    "overrides": {"models": 200, "running_jobs": 2},
    "usage": {"models": 12, "queued_jobs": 1, "running_jobs": 2, "stored_bytes": 48_213_004},
}  # fmt: skip
AUDIT_EXAMPLE: dict[str, Any] = {
    "id": 1042, "at": "2026-12-07T14:36:01.220931Z",
    "project_id": PROJECT_EXAMPLE["id"], "key_id": KEY_EXAMPLE["id"],
    "key_prefix": KEY_EXAMPLE["prefix"], "role": "member", "action": "fit",
    "route": "POST /v1/models/{model_id}/fit", "resource_type": "models",
    "resource_id": "c4609ebc-eb79-4c9c-a959-be9e773d1c57", "status_code": 202,
}  # fmt: skip

PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
QUOTAS = ("models", "queued_jobs", "running_jobs", "stored_bytes", "requests_per_s")


@dataclass(frozen=True)
class Principal:
    """The caller: its key (None in the single-user mode), role and project."""

    key_id: uuid.UUID | None
    key_prefix: str | None
    role: Role
    project_id: uuid.UUID
    project_name: str
    # The project's rate quota (0: unlimited).
    requests_per_s: float = 0.0

    @property
    def scope(self) -> Scope:
        if self.role is Role.admin:
            return Scope.everything(home=self.project_id)
        return Scope.of_project(self.project_id)


def project_name(value: str) -> str:
    if not PROJECT_NAME.match(value):
        raise ValueError(
            "a project name is 1 to 100 lowercase letters, digits, '_', '.' or '-', starting "
            "with a letter or digit"
        )
    return value


ProjectName = Annotated[str, AfterValidator(project_name)]


class KeyCreate(Strict):
    model_config = strict_with_example({"project": "vision", "role": "member", "name": "ci"})

    project: ProjectName = Field(description="Created if it does not exist")
    role: Role = Field(strict=False, description="viewer, member or admin")
    name: str | None = Field(default=None, max_length=200, description="A note, e.g. its owner")


class KeyOut(BaseModel):
    model_config = with_example(KEY_EXAMPLE)

    id: uuid.UUID
    prefix: str = Field(description="The token's visible start, to tell keys apart")
    project: str
    role: Role
    name: str | None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKeyRow, project: ProjectRow) -> KeyOut:
        return cls(id=key.id, prefix=key.prefix, project=project.name, role=Role(key.role),
                   name=key.name, created_at=key.created_at, revoked_at=key.revoked_at)  # fmt: skip


class KeyCreated(KeyOut):
    model_config = with_example(
        {**KEY_EXAMPLE, "token": "fitapi_cyh7yvbm_OO0maC49y3kvM8yFYbKGgIhKDfQBPUEFv4LT_s5m9lM"}
    )

    token: str = Field(description="The key itself: shown once, stored only as a hash")


class KeyList(BaseModel):
    model_config = with_example({"items": [KEY_EXAMPLE]})

    items: list[KeyOut]


class QuotaValues(BaseModel):
    models: int
    queued_jobs: int
    running_jobs: int
    stored_bytes: int
    requests_per_s: float


class UsageOut(BaseModel):
    models: int
    queued_jobs: int
    running_jobs: int
    stored_bytes: int


class ProjectOut(BaseModel):
    model_config = with_example(PROJECT_EXAMPLE)

    id: uuid.UUID
    name: str
    created_at: datetime
    quotas: QuotaValues = Field(description="In force: the project's own, else the settings'")
    overrides: dict[str, float] = Field(description="The project's own quotas")
    usage: UsageOut


class ProjectList(BaseModel):
    model_config = with_example({"items": [PROJECT_EXAMPLE]})

    items: list[ProjectOut]


class QuotaUpdate(Strict):
    """Each quota given replaces the project's own; null removes it (the setting applies)."""

    model_config = strict_with_example({"models": 200, "running_jobs": 2, "queued_jobs": None})

    models: int | None = Field(default=None, ge=0, le=2**31 - 1)
    queued_jobs: int | None = Field(default=None, ge=0, le=2**31 - 1)
    running_jobs: int | None = Field(default=None, ge=0, le=2**31 - 1)
    stored_bytes: int | None = Field(default=None, ge=0, le=2**62)
    requests_per_s: float | None = Field(default=None, ge=0, le=1e6)


class AuditOut(BaseModel):
    model_config = with_example(AUDIT_EXAMPLE)

    id: int
    at: datetime
    project_id: uuid.UUID | None
    key_id: uuid.UUID | None
    key_prefix: str | None
    role: str
    action: str
    route: str
    resource_type: str
    resource_id: str | None
    status_code: int

    @classmethod
    def of(cls, row: AuditRow) -> AuditOut:
        return cls.model_validate(row, from_attributes=True)


class AuditPage(BaseModel):
    model_config = with_example({"items": [AUDIT_EXAMPLE], "next_before_id": 1041})

    items: list[AuditOut]
    next_before_id: int | None = Field(description="Pass as before_id for the next page")
