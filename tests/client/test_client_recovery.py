"""How the client recovers from lost answers without a server (httpx's MockTransport): a retry
that meets its first try still running, a DELETE whose answer was lost, an event stream that
answers 5xx or ends early; and how the command line reports what it cannot recover from."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import fitapi
import fitapi.client
import fitapi.jobs
import httpx
import pytest
from fitapi.cli.main import app
from fitapi.cli.state import ExitCode
from typer.testing import CliRunner

Handler = Callable[[httpx.Request], httpx.Response]
JOB = {"id": "j1", "model_id": "m1", "kind": "fit", "status": "running", "epochs": 2}


def client_for(handler: Handler, retries: int = 5) -> fitapi.Client:
    return fitapi.Client("http://fitapi.test", api_key="k", retries=retries, backoff=0.0,
                         transport=httpx.MockTransport(handler))  # fmt: skip


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits the client asked for, none of them waited."""
    waits: list[float] = []
    monkeypatch.setattr(fitapi.client.time, "sleep", waits.append)
    return waits


def problem(status: int, kind: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"detail": [{"loc": ["header", "Idempotency-Key"], "msg": kind, "type": kind}]}
    return httpx.Response(status, json=body, headers=headers)


def scripted(answers: list[httpx.Response | Exception]) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


def test_a_retry_that_meets_its_first_try_running_is_sent_again(slept: list[float]) -> None:
    handler, seen = scripted([
        httpx.ReadError("reset after the server got it"),
        problem(409, "idempotency_key_in_use", {"Retry-After": "1"}),
        problem(409, "idempotency_key_in_use", {"Retry-After": "1"}),
        httpx.Response(201, json={"id": "m1"}),
    ])  # fmt: skip
    assert client_for(handler).post_json("/v1/models", {"config": {}}) == {"id": "m1"}
    assert len({r.headers["idempotency-key"] for r in seen}) == 1 and len(seen) == 4
    assert slept[1:] == [1.0, 1.0]  # the Retry-After

    # Within the retry budget only: then the 409 is raised.
    handler, seen = scripted([problem(409, "idempotency_key_in_use")] * 3)
    with pytest.raises(fitapi.Conflict) as info:
        client_for(handler, retries=2).post_json("/v1/models", {})
    assert info.value.type == "idempotency_key_in_use" and len(seen) == 3


def test_an_answer_the_server_did_not_keep_is_a_conflict_not_retried(slept: list[float]) -> None:
    handler, seen = scripted([
        httpx.RemoteProtocolError("disconnected"),
        problem(409, "idempotency_response_not_kept"),
    ])  # fmt: skip
    with pytest.raises(fitapi.Conflict) as info:
        client_for(handler).post_json("/v1/models", {})
    assert info.value.type == "idempotency_response_not_kept" and len(seen) == 2
    # Any other 409 is not retried either.
    handler, seen = scripted([problem(409, "quota_exceeded")])
    with pytest.raises(fitapi.Conflict):
        client_for(handler).post_json("/v1/models", {})
    assert len(seen) == 1


def not_found() -> httpx.Response:
    return httpx.Response(404, json={"detail": [{"loc": ["path", "model_id"], "msg": "no such",
                                                 "type": "not_found"}]})  # fmt: skip


@pytest.mark.parametrize(
    "lost", [httpx.ReadError("reset"), httpx.RemoteProtocolError("gone"), httpx.WriteError("w")]
)
def test_a_delete_whose_answer_was_lost_and_retry_finds_nothing_succeeded(
    slept: list[float], lost: Exception
) -> None:
    handler, seen = scripted([lost, not_found()])
    client_for(handler).models.delete("m1")
    handler, seen = scripted([lost, httpx.Response(503), not_found()])
    client_for(handler).datasets.delete("d1")
    assert [r.method for r in seen] == ["DELETE"] * 3


def test_a_delete_that_never_reached_the_server_still_finds_nothing(slept: list[float]) -> None:
    handler, _ = scripted([httpx.ConnectError("refused"), not_found()])
    with pytest.raises(fitapi.NotFound):
        client_for(handler).models.delete("m1")
    handler, _ = scripted([not_found()])
    with pytest.raises(fitapi.NotFound):
        client_for(handler).models.delete("m1")
    # A 404 to another method after a lost answer is still an error.
    handler, _ = scripted([httpx.ReadError("reset"), not_found()])
    with pytest.raises(fitapi.NotFound):
        client_for(handler).get_json("/v1/models/m1")


def stream(*lines: str) -> httpx.Response:
    body = "".join(line + "\n" for line in lines).encode()
    return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})


STATUS = ("event: status", 'data: {"status": "succeeded", "epochs_done": 2, "error": null}', "")


def epoch(n: int) -> tuple[str, ...]:
    return f"id: {n}", "event: epoch", f"data: {json.dumps({'epoch': n, 'logs': {}})}", ""


def events_of(answers: list[httpx.Response | Exception], retries: int = 5) -> Iterator[str]:
    handler, _ = scripted(answers)
    return (e.event for e in fitapi.Job(client_for(handler, retries), dict(JOB)).events())


def test_5xx_and_429_on_the_event_stream_are_retried(slept: list[float]) -> None:
    answers: list[httpx.Response | Exception] = [
        httpx.Response(502, text="bad gateway"),
        httpx.Response(429, headers={"Retry-After": "3"}, json={"detail": []}),
        stream(*epoch(0)),  # ends early: reopened after a wait
        httpx.Response(503, text="unavailable"),
        stream(*epoch(1), *STATUS),
    ]
    assert list(events_of(answers)) == ["epoch", "epoch", "status"] and answers == []
    assert 3.0 in slept and len(slept) == 4
    # Beyond the budget the error is raised; one that no retry mends at once.
    with pytest.raises(fitapi.ServerError):
        list(events_of([httpx.Response(504, text="timeout")] * 3, retries=2))
    with pytest.raises(fitapi.NotFound):
        list(events_of([not_found()]))


def test_a_stream_that_ends_early_is_reopened_with_backoff(slept: list[float]) -> None:
    empty = stream("retry: 200", "")  # the server's reconnection time: 200 ms
    answers = [empty, empty, empty, stream("retry: 200", "", *epoch(0)), empty,
               stream(*epoch(1), *STATUS)]  # fmt: skip
    assert list(events_of(answers)) == ["epoch", "epoch", "status"]
    assert slept[0] == 0.2 and 0.2 <= slept[1] <= 0.4 and 0.4 <= slept[2] <= 0.8
    assert slept[3] == 0.2 and 0.2 <= slept[4] <= 0.4  # an event starts the backoff again
    # A stream that keeps ending with nothing: EventStreamError, not an endless loop.
    handler, seen = scripted([stream(": nothing", "")] * fitapi.jobs.MAX_QUIET_REOPENS)
    with pytest.raises(fitapi.EventStreamError):
        list(fitapi.Job(client_for(handler), dict(JOB)).events())
    assert len(seen) == fitapi.jobs.MAX_QUIET_REOPENS


def run_cli(monkeypatch: pytest.MonkeyPatch, handler: Handler, *args: str) -> tuple[int, str, str]:
    def client(url: str | None, api_key: str | None) -> fitapi.Client:
        return fitapi.Client(url, api_key, backoff=0.0, transport=httpx.MockTransport(handler))

    monkeypatch.setattr(fitapi.client, "Client", client)
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.stdout, result.stderr


def test_the_cli_maps_the_event_streams_errors_to_exit_codes(
    monkeypatch: pytest.MonkeyPatch, slept: list[float]
) -> None:
    def gateway(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(502, text="bad gateway")
        return httpx.Response(200, json=JOB)

    code, out, err = run_cli(monkeypatch, gateway, "-o", "json", "jobs", "watch", "j1")
    assert code == ExitCode.API_ERROR and json.loads(out)["error"]["status"] == 502

    def quiet(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return stream(": nothing", "")
        return httpx.Response(200, json=JOB)

    monkeypatch.setattr(fitapi.jobs, "MAX_QUIET_REOPENS", 3)
    code, out, err = run_cli(monkeypatch, quiet, "-o", "json", "jobs", "watch", "j1")
    assert code == ExitCode.EVENTS_LOST == 6 and "Traceback" not in err
    error = json.loads(out)["error"]
    assert error["status"] is None and error["detail"][0]["type"] == "event_stream_ended"
    assert "job j1" in err
