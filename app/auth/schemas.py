"""Who a request is (a Principal), and the admin routes' request and response bodies."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from app.db.models import ApiKeyRow, AuditRow, ProjectRow, Role
from app.db.scope import Scope
from app.runtime.schemas import Strict, strict_with_example

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
    token: str = Field(description="The key itself: shown once, stored only as a hash")


class KeyList(BaseModel):
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
    id: uuid.UUID
    name: str
    created_at: datetime
    quotas: QuotaValues = Field(description="In force: the project's own, else the settings'")
    overrides: dict[str, float] = Field(description="The project's own quotas")
    usage: UsageOut


class ProjectList(BaseModel):
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
    items: list[AuditOut]
    next_before_id: int | None = Field(description="Pass as before_id for the next page")
