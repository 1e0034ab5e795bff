"""AttemptContext: what every callback of a fit attempt shares (the app's context, the job and
the attempt number that fences its writes)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.runtime.context import AppContext


@dataclass(frozen=True)
class AttemptContext:
    ctx: AppContext
    job_id: uuid.UUID
    attempt: int
