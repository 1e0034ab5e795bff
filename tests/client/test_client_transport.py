"""The client's transport without a server (httpx's MockTransport): what it retries and how,
that a POST keeps one Idempotency-Key across its retries, that an upload is sent whole again,
that the event stream follows `reconnect` with Last-Event-ID, and Keras's line formats."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import fitapi
import httpx
import numpy as np
import pytest
from fitapi.progress import EpochPrinter

Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, retries: int = 5) -> fitapi.Client:
    return fitapi.Client("http://fitapi.test", api_key="k", retries=retries, backoff=0.0,
                         transport=httpx.MockTransport(handler))  # fmt: skip


def test_503s_are_retried_with_the_same_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) < 3:
            return httpx.Response(503, json={"detail": [{"loc": [], "msg": "busy", "type": "x"}]})
        return httpx.Response(201, json={"id": "m1"})

    client = client_for(handler)
    assert client.post_json("/v1/models", {"config": {}}) == {"id": "m1"}
    keys = {r.headers["idempotency-key"] for r in seen}
    assert len(seen) == 3 and len(keys) == 1
    assert all(r.headers["authorization"] == "Bearer k" for r in seen)
    # A second logical call gets a key of its own.
    client.post_json("/v1/models", {"config": {}})
    assert seen[-1].headers["idempotency-key"] not in keys


def test_429_waits_for_retry_after_and_connection_errors_are_retried() -> None:
    answers: list[httpx.Response | Exception] = [
        httpx.ConnectError("refused"),
        httpx.Response(429, headers={"Retry-After": "0"}, json={"detail": []}),
        httpx.Response(502, text="bad gateway"),
        httpx.Response(200, json={"ok": True}),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert client_for(handler).get_json("/v1/models") == {"ok": True}
    assert answers == []


def test_retries_are_bounded_and_errors_keep_the_servers_fields() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, json={"detail": [{"loc": ["body"], "msg": "down",
                                                     "type": "unavailable"}]})  # fmt: skip

    with pytest.raises(fitapi.ServerError) as info:
        client_for(handler, retries=2).get_json("/v1/jobs")
    assert calls == 3 and info.value.status == 503 and info.value.type == "unavailable"

    def refuse(request: httpx.Request) -> httpx.Response:
        body = {"detail": [{"loc": ["body", "compile", "loss"], "msg": "unknown loss 'x'",
                            "type": "value_error"}]}  # fmt: skip
        return httpx.Response(422, json=body, headers={"X-Request-ID": "r1"})

    with pytest.raises(fitapi.InvalidRequest) as bad:
        client_for(refuse).post_json("/v1/models/m/fit", {})
    assert bad.value.loc == ["body", "compile", "loss"] and bad.value.msg == "unknown loss 'x'"
    assert bad.value.request_id == "r1" and "body.compile.loss" in str(bad.value)


def test_an_upload_is_sent_whole_again_on_retry(tmp_path: Path) -> None:
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"items": [], "total": 0})
        bodies.append(request.read())
        if len(bodies) == 1:
            return httpx.Response(504)
        arrays = [{"name": "x", "dtype": "float32", "shape": [3000, 100]}]
        digest = request.url.params.get("format")
        return httpx.Response(201, json={"id": "d1", "sha256": "s", "arrays": arrays,
                                         "format": digest})  # fmt: skip

    x = np.random.default_rng(0).normal(size=(3000, 100)).astype(np.float32)  # > one chunk
    dataset = client_for(handler).datasets.upload(x, progress=False)
    assert dataset.id == "d1" and len(bodies) == 2 and bodies[0] == bodies[1]
    assert np.array_equal(np.load(io.BytesIO(bodies[1])), x)
    # A file is opened again for the retry.
    np.save(tmp_path / "x.npy", x[:10])
    bodies.clear()
    client_for(handler).datasets.upload(tmp_path / "x.npy", progress=False)
    assert len(bodies) == 2 and bodies[0] == bodies[1] == (tmp_path / "x.npy").read_bytes()


def sse(*events: tuple[str, str | None, dict]) -> bytes:
    out = "retry: 1000\n\n"
    for kind, event_id, data in events:
        out += (f"id: {event_id}\n" if event_id is not None else "") + f"event: {kind}\n"
        out += f"data: {json.dumps(data)}\n\n"
    return out.encode()


def test_the_event_stream_follows_reconnect_with_last_event_id() -> None:
    asked: list[str | None] = []
    job = {"id": "j1", "model_id": "m1", "kind": "fit", "status": "running", "epochs": 2,
           "epochs_done": 0, "history": {}}  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            asked.append(request.headers.get("last-event-id"))
            if asked[-1] is None:
                return httpx.Response(200, content=sse(
                    ("progress", None, {"epoch": 0, "batch": 1, "steps": 2, "logs": {"loss": 1}}),
                    ("epoch", "0", {"epoch": 0, "logs": {"loss": 0.5}, "attempt": 1}),
                    ("reconnect", None, {"reason": "max_duration", "after": 0})))  # fmt: skip
            status = {"status": "succeeded", "epochs_done": 2, "error": None}
            return httpx.Response(200, content=sse(
                ("epoch", "1", {"epoch": 1, "logs": {"loss": 0.25}, "attempt": 1}),
                ("status", None, status)))  # fmt: skip
        if request.url.path.endswith("/logs"):
            return httpx.Response(200, json={"items": [{"epoch": 0}, {"epoch": 1}]})
        return httpx.Response(200, json={**job, "status": "succeeded", "epochs_done": 2,
                                         "history": {"loss": [0.5, 0.25]}})  # fmt: skip

    client = client_for(handler)
    events = list(fitapi.Job(client, job).events())
    assert [e.event for e in events] == ["progress", "epoch", "epoch", "status"]
    assert asked == [None, "0"]
    out = io.StringIO()
    history = fitapi.Job(client, job).wait(verbose=2, out=out)
    assert history.history == {"loss": [0.5, 0.25]} and history.epoch == [0, 1]
    lines = out.getvalue().splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    assert lines[1].startswith("2/2 - ") and lines[1].endswith(" - loss: 0.5000")


def test_keras_line_formats() -> None:
    out = io.StringIO()
    printer = EpochPrinter(1, epochs=10, steps=4, out=out)
    printer.progress({"epoch": 0, "batch": 1, "steps": 4, "logs": {"loss": 0.7}})
    printer.epoch(0, {"accuracy": 0.5, "loss": 0.0001, "val_loss": None})
    lines = out.getvalue().splitlines()
    assert lines[0] == "Epoch 1/10"  # not a terminal: no bar redrawn mid-epoch
    head, _, logs = lines[1].partition(" - ")
    assert head.startswith("4/4 " + "━" * 20 + " ") and head.endswith("/step")
    assert logs == "accuracy: 0.5000 - loss: 1.0000e-04 - val_loss: nan"

    out = io.StringIO()
    printer = EpochPrinter(2, epochs=1, steps=12, out=out)
    printer.epoch(0, {"loss": 0.25})
    [line] = out.getvalue().splitlines()  # one epoch: no "Epoch 1/1", as in Keras
    assert line.startswith("12/12 - ") and line.endswith("/step - loss: 0.2500")


class Dropped(httpx.SyncByteStream):
    """A stream cut off after its first bytes, as a dropped connection is."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    def __iter__(self):  # type: ignore[no-untyped-def]
        yield self.first
        raise httpx.ReadError("connection reset")


def test_a_dropped_stream_is_resumed_after_the_last_epoch() -> None:
    asked: list[str | None] = []
    job = {"id": "j1", "model_id": "m1", "kind": "fit", "status": "running", "epochs": 2}

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("last-event-id"))
        if len(asked) == 1:
            first = sse(("epoch", "0", {"epoch": 0, "logs": {"loss": 0.5}, "attempt": 1}))
            return httpx.Response(200, stream=Dropped(first))
        return httpx.Response(200, content=sse(
            ("epoch", "1", {"epoch": 1, "logs": {"loss": 0.25}, "attempt": 1}),
            ("status", None, {"status": "failed", "epochs_done": 2, "error": None})))  # fmt: skip

    events = list(fitapi.Job(client_for(handler), job).events())
    assert [(e.event, e.id) for e in events] == [("epoch", "0"), ("epoch", "1"), ("status", None)]
    assert asked == [None, "0"]


def test_an_upload_draws_its_bar_on_stderr_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"items": [], "total": 0})
        request.read()
        return httpx.Response(201, json={"id": "d1", "sha256": "s", "arrays": []})

    client = client_for(handler)
    client.datasets.upload(np.zeros((10, 3), np.float32), name="zeros", progress=True)
    assert "zeros" in capsys.readouterr().err
    client.datasets.upload(np.ones((10, 3), np.float32), progress=False)
    assert capsys.readouterr().err == ""
