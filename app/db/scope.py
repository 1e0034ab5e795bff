"""Which projects a query may see. Every repository function a caller can reach takes a `Scope`
and filters by it, so no route can forget: a resource of another project is simply not found.

An API key's scope is its project; an admin key's scope is every project, and what it creates
goes to its own. The workers and the reaper act for the system, on ids the API already scoped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, true

from app.db.models import DEFAULT_PROJECT_ID


@dataclass(frozen=True)
class Scope:
    # The project new resources go to.
    home: uuid.UUID
    # None: every project (admin keys, and the system).
    project_id: uuid.UUID | None

    @classmethod
    def of_project(cls, project_id: uuid.UUID) -> Scope:
        return cls(home=project_id, project_id=project_id)

    @classmethod
    def everything(cls, home: uuid.UUID = DEFAULT_PROJECT_ID) -> Scope:
        return cls(home=home, project_id=None)

    def where(self, column: Any) -> ColumnElement[bool]:
        """The filter to add to a query of a table with a project column."""
        if self.project_id is None:
            return true()
        result: ColumnElement[bool] = column == self.project_id
        return result

    def sees(self, project_id: uuid.UUID) -> bool:
        return self.project_id is None or self.project_id == project_id

    def within(self, project_id: uuid.UUID) -> Scope:
        """Narrowed to one project, e.g. the resources a job of that project may read: an
        admin fitting a model reads only that model's datasets."""
        return Scope.of_project(project_id)


# The workers, the reaper and the admin command: ids they act on were scoped when the API
# accepted them.
SYSTEM = Scope.everything()
