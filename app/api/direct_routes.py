"""The hot route answered without FastAPI's routing: `POST /v1/models/{model_id}/predict`.

FastAPI finds a route by trying every route of every included router, twice for a route inside
one, which costs a predict of one row more than its model does. This ASGI middleware, the
innermost of the app's own, matches that one path with the route's own pattern, marks the scope
as routing would (`route`, `path_params`: the role check, the audit and the metrics read them),
and hands the request to the handler that answers the route's body type (`handlers_for`: the
same handlers the route itself runs). Their errors are answered by the app's exception handlers,
as FastAPI's exception middleware would answer them; an unexpected error goes on up to the
server-error layer. A request the handler does not take (a JSON body that is not plainly
valid: it answers None) goes through the app's routing with its body, so its error is the
route's own."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.auth import route_path

Handler = Callable[[Request], Awaitable[Response | None]]
# The route's name -> the handler of a request, by its body's media type (None: routing).
HandlerFor = Callable[[str, str], Handler | None]


class DirectRoutes:
    def __init__(self, app: ASGIApp, names: tuple[str, ...], handler_for: HandlerFor) -> None:
        self.app = app
        self.names = names
        self.handler_for = handler_for
        self._routes: list[APIRoute] | None = None

    def _direct(self, scope: Scope) -> list[APIRoute]:
        if self._routes is None:  # the app's routes are all in place by its first request
            found = [r for r in _all_routes(scope["app"].routes) if r.name in self.names]
            self._routes = found
        return self._routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        for route in self._direct(scope):
            found = route.path_regex.match(path)
            if found is not None and "POST" in (route.methods or ()):
                await self._answer(route, found.groupdict(), scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _answer(
        self, route: APIRoute, params: dict[str, Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        media = _media(scope)
        handler = self.handler_for(route.name, media)
        if handler is None:
            await self.app(scope, receive, send)
            return
        read: list[Message] = []

        async def recorded() -> Message:
            message = await receive()
            read.append(message)
            return message

        # In place, as routing does: the layers outside read them once the response is sent.
        scope["route"], scope["endpoint"] = route, route.endpoint
        scope["path_params"] = {**scope.get("path_params", {}), **params}
        request = Request(scope, recorded, send)
        try:
            response = await handler(request)
        except Exception as exc:
            response = await _handled(scope["app"], request, exc)
        if response is None:  # the route's own way, with the body read so far
            await self.app(scope, _replay(read, receive), send)
            return
        await response(scope, receive, send)


def _all_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """The API routes among `routes` and the routers included in them (whose routes carry the
    full path: the routers here set their prefix themselves)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "routes", None) or getattr(
            getattr(route, "original_router", None), "routes", None
        )
        if inner:
            yield from _all_routes(inner)


def _media(scope: Scope) -> str:
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            return str(value.decode("latin-1").split(";", 1)[0].strip().lower())
    return ""


async def _handled(app: Any, request: Request, exc: Exception) -> Response:
    """The app's answer to `exc`, as FastAPI's exception middleware gives it: the handler of
    its nearest class, except the catch-all (Exception), which the outermost layer runs."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            break
        handler = app.exception_handlers.get(cls)
        if handler is not None:
            if inspect.iscoroutinefunction(handler):
                answer: Response = await handler(request, exc)
            else:
                answer = await run_in_threadpool(handler, request, exc)
            return answer
    raise exc


def _replay(read: list[Message], receive: Receive) -> Receive:
    """`receive` that first gives again the messages already read."""
    pending = list(read)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
