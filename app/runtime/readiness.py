"""Readiness: whether this process can serve, checked on each /readyz call. The database
answers a SELECT 1, the broker (distributed mode only) answers a PING, and the artifact store
takes a write. Each check runs on a small pool of its own, bounded by READINESS_TIMEOUT_S: a
hung database makes the probe say so in time, without taking threads from the requests. What
went wrong goes to the log; callers get the check's name and `failed` or `timeout` only."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from app.db.session import ping
from app.runtime.context import AppContext

log = logging.getLogger(__name__)

OK, FAILED, TIMEOUT = "ok", "failed", "timeout"


def _broker_ping(url: str, timeout_s: float) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        if not client.ping():
            raise ConnectionError("the broker did not answer PONG")
    finally:
        client.close()


class Readiness:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        # A check that hangs keeps its thread until it returns; with every thread taken the
        # next checks time out too, which is the truth: not ready.
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fitapi-readyz")

    def checks(self) -> dict[str, Callable[[], None]]:
        ctx, settings = self.ctx, self.ctx.settings
        found: dict[str, Callable[[], None]] = {"database": lambda: ping(ctx.engine)}
        if settings.redis_url:
            url, timeout = settings.redis_url, settings.readiness_timeout_s
            found["broker"] = lambda: _broker_ping(url, timeout)
        found["artifacts"] = ctx.store.check_writable
        return found

    async def _run(self, name: str, check: Callable[[], None]) -> str:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.run_in_executor(self._pool, check), self.ctx.settings.readiness_timeout_s
            )
        except TimeoutError:
            log.warning("readiness check %s took longer than %s s", name,
                        self.ctx.settings.readiness_timeout_s)  # fmt: skip
            return TIMEOUT
        except Exception:
            log.warning("readiness check %s failed", name, exc_info=True)
            return FAILED
        return OK

    async def run(self) -> dict[str, str]:
        """Each check's name and outcome: ok, failed or timeout."""
        checks = self.checks()
        outcomes = await asyncio.gather(*(self._run(n, c) for n, c in checks.items()))
        return dict(zip(checks, outcomes, strict=True))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
