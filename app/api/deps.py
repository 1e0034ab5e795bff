"""Typed dependencies for the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.jobs.context import JobsContext


def get_context(request: Request) -> JobsContext:
    ctx: JobsContext = request.app.state.ctx
    return ctx


Ctx = Annotated[JobsContext, Depends(get_context)]
