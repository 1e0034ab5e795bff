"""A proxy in front of a real server that loses the answers to the first N POSTs: it forwards
each such request, lets the server act on it, then closes the client's connection without a
byte of the response, as a dropped network link or a crashed load balancer would. Every other
request passes through unchanged (one request per connection)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def _read_request(conn: socket.socket) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
    length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return method, target, [(k, v) for k, v in headers], body  # type: ignore[misc]


class LossyProxy:
    def __init__(self, upstream: str, lose_posts: int) -> None:
        self.upstream = upstream
        self.lose_posts = lose_posts
        self.lost: list[str] = []  # the Idempotency-Key of each POST whose answer was lost
        self.seen_keys: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.http = httpx.Client(base_url=upstream, timeout=60)
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        request = _read_request(conn)
        if request is None:
            return
        method, target, headers, body = request
        forwarded = {k: v for k, v in headers if k.lower() not in HOP_HEADERS | {"host"}}
        response = self.http.request(method, target, headers=forwarded, content=body)
        if method == "POST":
            self.seen_keys.append(dict((k.lower(), v) for k, v in headers)["idempotency-key"])
            if len(self.lost) < self.lose_posts:
                self.lost.append(self.seen_keys[-1])
                return  # the server acted; the client hears nothing
        reason = response.reason_phrase or "OK"
        out = [f"HTTP/1.1 {response.status_code} {reason}"]
        out += [f"{k}: {v}" for k, v in response.headers.items() if k.lower() not in HOP_HEADERS]
        out += [f"content-length: {len(response.content)}", "connection: close", "", ""]
        conn.sendall("\r\n".join(out).encode("latin-1") + response.content)

    def close(self) -> None:
        self.sock.close()
        self.http.close()


@contextmanager
def lossy_proxy(upstream: str, lose_posts: int) -> Iterator[LossyProxy]:
    proxy = LossyProxy(upstream, lose_posts)
    proxy.thread.start()
    try:
        yield proxy
    finally:
        proxy.close()
