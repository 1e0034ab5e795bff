"""A real HTTP receiver for webhook tests: a threaded http.server on 127.0.0.1 that records
every request and answers by its path: `/ok` 200, `/down` 500, `/moved` 302, `/flaky/N` 500 for
the first N requests to that path and 200 after."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.e2e.harness import poll


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append(Received(self.path, dict(self.headers), body))
                    seen = sum(1 for r in receiver.requests if r.path == self.path)
                code = 200
                if self.path.startswith("/down"):
                    code = 500
                elif self.path.startswith("/moved"):
                    code = 302
                elif self.path.startswith("/flaky/"):
                    code = 500 if seen <= int(self.path.rsplit("/", 1)[1]) else 200
                self.send_response(code)
                if code == 302:
                    self.send_header("Location", "/ok")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait(self, path: str, count: int, timeout_s: float = 60.0) -> list[Received]:
        """The first `count` requests to `path`."""
        poll(lambda: len(self.at(path)) >= count, f"{count} requests to {path}", timeout=timeout_s)
        return self.at(path)[:count]


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
