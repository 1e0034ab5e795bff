"""Who calls, and whether they may: the bearer key is checked on every route but /healthz, the
role the route needs is checked (GET and HEAD read, so a viewer may; every other method writes,
so it needs a member; /v1/admin needs an admin), then the project's request rate. Routes take
the caller as `Caller` and hand its scope to the services."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.deps import Ctx
from app.auth import service
from app.auth.ratelimit import RateLimiter, retry_after_header
from app.auth.schemas import Principal
from app.core.errors import Forbidden, QuotaExceeded
from app.db.models import Role
from app.runtime.context import AppContext

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="APIKey",
    description="An API key, `Authorization: Bearer fitapi_...`, from `python -m app.admin keys "
    "create`. Not needed while the server runs single-user (no key exists and AUTH_REQUIRED is "
    "false).",
)
READS = ("GET", "HEAD")


def required_role(request: Request) -> Role:
    if request.url.path.startswith("/v1/admin"):
        return Role.admin
    return Role.viewer if request.method in READS else Role.member


def authorize(request: Request, ctx: AppContext, token: str | None) -> Principal:
    """The caller of `request`, once it may do what the request asks; else 401, 403 or 429."""
    state = request.app.state
    principal = service.authenticate(ctx, mode=state.auth_mode, token=token)
    request.state.principal = principal
    needed = required_role(request)
    if principal.role.rank < needed.rank:
        raise Forbidden(
            f"this needs the {needed.value} role; the key's role is {principal.role.value}",
            loc=["header", "Authorization"],
        )
    limiter: RateLimiter = state.rate_limiter
    wait = limiter.take(principal.project_id, principal.requests_per_s)
    if wait > 0:
        raise QuotaExceeded(quota="requests_per_s", limit=principal.requests_per_s,
                            used=principal.requests_per_s, status_code=429,
                            retry_after_s=int(retry_after_header(wait)))  # fmt: skip
    return principal


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer` header (for handlers outside the dependency
    system, such as predict's binary body)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def caller(
    request: Request,
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    return authorize(request, ctx, credentials.credentials if credentials is not None else None)


Caller = Annotated[Principal, Depends(caller)]
