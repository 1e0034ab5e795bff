"""Who calls, and whether they may.

`Authenticate`, an ASGI middleware, checks the bearer key of every `/v1` and `/v2/models` (the
Open Inference Protocol's model routes; its health and server metadata are public) request and
the project's request rate before anything reads the body (a client without a key cannot make
the server parse megabytes of JSON first). The `caller` dependency, on every router, then checks the
role the route needs: GET and HEAD read, so a viewer may; every other method writes, so it needs
a member; the admin routes need an admin. The role is decided by the matched route's template,
never by the raw path (which a root path prefixes). Routes take the caller as `Caller` and hand
its scope to the services."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import error_body
from app.auth import service
from app.auth.ratelimit import RateLimiter, retry_after_header
from app.auth.schemas import Principal
from app.core.errors import AppError, Forbidden, QuotaExceeded
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
ADMIN_PREFIX = "/v1/admin"
# Tenant data: every request under these needs a key.
TENANT_PREFIXES = ("/v1/", "/v2/models/")
# Outside /v1 but for admins alone: the scrape shows every project's job counts.
ADMIN_ROUTES = ("/metrics",)


def bearer_token(headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def route_path(scope: Scope) -> str:
    """The path within the application: without the root path a proxy mounts it under."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _authenticate(state: object, ctx: AppContext, token: str | None) -> Principal:
    principal = service.authenticate(ctx, mode=state.auth_mode, token=token)  # type: ignore[attr-defined]
    return _within_rate(state, principal)


def _within_rate(state: object, principal: Principal) -> Principal:
    limiter: RateLimiter = state.rate_limiter  # type: ignore[attr-defined]
    wait = limiter.take(principal.project_id, principal.requests_per_s)
    if wait > 0:
        raise QuotaExceeded(quota="requests_per_s", limit=principal.requests_per_s,
                            used=principal.requests_per_s, status_code=429,
                            retry_after_s=int(retry_after_header(wait)))  # fmt: skip
    return principal


class Authenticate:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not route_path(scope).startswith(TENANT_PREFIXES):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        token = bearer_token(Headers(scope=scope))
        try:
            # A key checked in the last AUTH_CACHE_S: no database read, so no thread either.
            cached = state.auth_mode.cached(state.ctx, token)
            if cached is not None:
                principal = _within_rate(state, cached)
            else:
                principal = await anyio.to_thread.run_sync(_authenticate, state, state.ctx, token)
        except AppError as exc:
            body = error_body(exc.loc, exc.message, exc.error_type)
            response = JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def required_role(request: Request) -> Role:
    route = request.scope.get("route")
    template = getattr(route, "path", None) or route_path(request.scope)
    if template == ADMIN_PREFIX or template.startswith(f"{ADMIN_PREFIX}/"):
        return Role.admin
    if template in ADMIN_ROUTES:
        return Role.admin
    return Role.viewer if request.method in READS else Role.member


def authorize(request: Request) -> Principal:
    """The caller of `request` (authenticated by the middleware), once its role allows the
    route; else a 403."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):  # a route outside them: authenticate here
        state = request.app.state
        principal = _authenticate(state, state.ctx, bearer_token(request.headers))
        request.state.principal = principal
    needed = required_role(request)
    if principal.role.rank < needed.rank:
        raise Forbidden(
            f"this needs the {needed.value} role; the key's role is {principal.role.value}",
            loc=["header", "Authorization"],
        )
    return principal


def caller(
    request: Request,
    # Declares the bearer scheme in the OpenAPI document (the middleware has read the key).
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    return authorize(request)


Caller = Annotated[Principal, Depends(caller)]


def metrics_reader(request: Request) -> None:
    """/metrics needs an admin key once keys are required, unless METRICS_PUBLIC opens it for
    a scraper on a private network; single-user, it is open like every route."""
    if not request.app.state.ctx.settings.metrics_public:
        authorize(request)
