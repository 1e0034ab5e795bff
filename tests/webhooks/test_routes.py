"""Webhooks through the API on the embedded default, against a real local HTTP receiver: a fit's
job events arrive signed; failed tries are retried, given up after WEBHOOK_MAX_ATTEMPTS, and
redirects are not followed; bad input is a 422 naming the field; another project's webhook is a
404 and receives nothing of this project's jobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.webhooks.signing import verify
from tests.api.conftest import serve
from tests.e2e.harness import poll
from tests.support import scenario
from tests.webhooks.receiver import Receiver, receiving

XY = {"x": [[0.5], [1.5], [2.5], [3.5]], "y": [0.0, 0.0, 1.0, 1.0]}
FAST = {"webhook_poll_s": 0.05, "webhook_retry_base_s": 0.05, "webhook_retry_max_s": 0.2,
        "webhook_max_attempts": 3}  # fmt: skip


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with receiving() as r:
        yield r


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with serve(tmp_path_factory.mktemp("webhooks"), None, **FAST) as client:
        yield client


@pytest.fixture
def client(app: TestClient) -> Iterator[TestClient]:
    yield app
    for hook in app.get("/v1/webhooks?limit=100").json()["items"]:
        app.delete(f"/v1/webhooks/{hook['id']}")


def _fit(client: TestClient, headers: dict[str, str] | None = None, epochs: int = 1) -> str:
    h = headers or {}
    model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 1}, headers=h)
    assert model.status_code == 201, model.text
    body = {**XY, "compile": scenario.COMPILE, "epochs": epochs}
    r = client.post(f"/v1/models/{model.json()['id']}/fit", json=body, headers=h)
    assert r.status_code == 202, r.text
    job_id = str(r.json()["id"])
    poll(lambda: client.get(f"/v1/jobs/{job_id}", headers=h).json()["status"] == "succeeded",
         "the fit")  # fmt: skip
    return job_id


def _settled(client: TestClient, hook_id: str, count: int) -> list[dict[str, Any]]:
    """The webhook's deliveries once `count` of them are delivered or given up."""

    def settled() -> list[dict[str, Any]] | None:
        items = client.get(f"/v1/webhooks/{hook_id}/deliveries").json()["items"]
        return list(items) if len([d for d in items if d["status"] != "pending"]) >= count else None

    return poll(settled, f"{count} deliveries settled")


def test_a_fit_sends_signed_job_events(client: TestClient, receiver: Receiver) -> None:
    events = ["job.queued", "job.running", "job.succeeded", "job.epoch"]
    r = client.post("/v1/webhooks", json={"url": f"{receiver.base}/ok/fit", "events": events})
    assert r.status_code == 201, r.text
    hook = r.json()
    secret = hook["secret"]
    assert secret.startswith("whsec_") and hook["active"] and hook["events"] == events
    read = client.get(f"/v1/webhooks/{hook['id']}").json()
    assert "secret" not in read and read["url"] == f"{receiver.base}/ok/fit"
    assert "secret" not in client.get("/v1/webhooks").text
    job_id = _fit(client, epochs=2)
    got = receiver.wait("/ok/fit", 5)
    for request in got:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers["content-type"] == "application/json"
        ts = int(headers["webhook-timestamp"])
        assert verify(secret, ts, request.body, headers["webhook-signature"])
        assert not verify("whsec_other", ts, request.body, headers["webhook-signature"])
        assert not verify(secret, ts + 1, request.body, headers["webhook-signature"])
        assert headers["webhook-id"] == request.json["id"]
        assert request.json["webhook_id"] == hook["id"]
        assert request.json["data"]["job"]["id"] == job_id
    by_type = {}
    for request in got:
        by_type.setdefault(request.json["type"], []).append(request.json["data"])
    assert sorted(by_type) == sorted(events)
    assert [d["epoch"] for d in by_type["job.epoch"]] == [0, 1]
    assert set(by_type["job.epoch"][0]["logs"]) == {"loss", "accuracy"}
    done = by_type["job.succeeded"][0]["job"]
    assert done["status"] == "succeeded" and done["epochs_done"] == 2 and done["error"] is None
    assert by_type["job.running"][0]["job"]["attempt"] == 1
    deliveries = _settled(client, hook["id"], 5)
    assert len(deliveries) == 5
    for d in deliveries:
        assert (d["status"], d["attempts"], d["last_status_code"], d["last_error"]) == (
            "delivered", 1, 200, None)  # fmt: skip
        assert d["job_id"] == job_id and d["delivered_at"] is not None
    page = client.get(f"/v1/webhooks/{hook['id']}/deliveries?limit=2&offset=1").json()
    assert page["total"] == 5 and len(page["items"]) == 2


def test_retries_give_up_and_redirects(client: TestClient, receiver: Receiver) -> None:
    hooks = {}
    for path in ("/flaky/1", "/down", "/moved"):
        r = client.post("/v1/webhooks", json={"url": receiver.base + path,
                                              "events": ["job.succeeded"]})  # fmt: skip
        assert r.status_code == 201, r.text
        hooks[path] = r.json()["id"]
    # An inactive webhook gets nothing.
    r = client.post("/v1/webhooks", json={"url": f"{receiver.base}/ok/inactive", "active": False})
    assert r.status_code == 201
    _fit(client)
    [flaky] = _settled(client, hooks["/flaky/1"], 1)
    assert (flaky["status"], flaky["attempts"], flaky["last_status_code"]) == ("delivered", 2, 200)
    assert flaky["last_error"] is None and len(receiver.at("/flaky/1")) == 2
    first, second = receiver.at("/flaky/1")
    assert first.body == second.body and first.headers["Webhook-Id"] == second.headers["Webhook-Id"]
    [down] = _settled(client, hooks["/down"], 1)
    assert (down["status"], down["attempts"], down["last_status_code"], down["last_error"]) == (
        "failed", 3, 500, "HTTP 500")  # fmt: skip
    assert down["next_attempt_at"] is None and len(receiver.at("/down")) == 3
    [moved] = _settled(client, hooks["/moved"], 1)
    assert moved["status"] == "failed" and moved["last_status_code"] == 302
    assert "redirects are not followed" in moved["last_error"]
    assert receiver.at("/ok") == [] and receiver.at("/ok/inactive") == []
    # Sent again on request: the same id and body, a fresh count of tries.
    r = client.post(f"/v1/webhooks/{hooks['/down']}/deliveries/{down['id']}/redeliver")
    assert r.status_code == 202, r.text
    assert r.json()["attempts"] == 0 and r.json()["status"] == "pending"
    receiver.wait("/down", 6)
    [again] = _settled(client, hooks["/down"], 1)
    assert again["id"] == down["id"] and again["attempts"] == 3
    assert {r.headers["Webhook-Id"] for r in receiver.at("/down")} == {down["id"]}
    other = client.post(f"/v1/webhooks/{hooks['/moved']}/deliveries/{down['id']}/redeliver")
    assert other.status_code == 404 and other.json()["detail"][0]["loc"] == ["path", "delivery_id"]


def test_change_and_delete(client: TestClient, receiver: Receiver) -> None:
    hook = client.post("/v1/webhooks", json={"url": f"{receiver.base}/ok/a"}).json()
    assert hook["events"] == ["job.queued", "job.running", "job.succeeded", "job.failed",
                              "job.cancelled"]  # fmt: skip
    r = client.patch(f"/v1/webhooks/{hook['id']}", json={"active": False, "description": "x"})
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["description"] == "x"
    r = client.patch(f"/v1/webhooks/{hook['id']}", json={"events": None})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "events"]
    assert client.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    assert client.get(f"/v1/webhooks/{hook['id']}").status_code == 404
    assert client.get(f"/v1/webhooks/{hook['id']}/deliveries").status_code == 404


@pytest.mark.parametrize(
    ("body", "loc", "says"),
    [
        ({"url": "ftp://example.com/x"}, ["body", "url"], "http or https"),
        ({"url": "https://user:pw@example.com/x"}, ["body", "url"], "user or password"),
        ({"url": "https://example.com/" + "a" * 2100}, ["body", "url"], "2048"),
        ({"url": "https:///x"}, ["body", "url"], "no host"),
        ({"url": "https://example.com/a b"}, ["body", "url"], "spaces"),
        ({"url": 5}, ["body", "url"], ""),
        ({}, ["body", "url"], ""),
        ({"url": "https://example.com", "events": ["job.done"]}, ["body", "events", 0], ""),
        ({"url": "https://example.com", "events": []}, ["body", "events"], ""),
        ({"url": "https://example.com", "events": ["job.failed", "job.failed"]},
         ["body", "events"], "once"),
        ({"url": "https://example.com", "secret": "short"}, ["body", "secret"], "16"),
        ({"url": "https://example.com", "secret": "a b" * 10}, ["body", "secret"], "printable"),
        ({"url": "https://example.com", "active": "yes"}, ["body", "active"], ""),
        ({"url": "https://example.com", "colour": 1}, ["body", "colour"], ""),
        ({"url": "https://example.com", "description": "a\x00b"}, ["body", "description"], ""),
    ],
)  # fmt: skip
def test_bad_input_is_a_422_naming_the_field(
    client: TestClient, body: dict[str, Any], loc: list[Any], says: str
) -> None:
    r = client.post("/v1/webhooks", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == loc and says in detail["msg"], detail
    assert client.get("/v1/webhooks").json()["total"] == 0


def test_a_given_secret_is_kept(client: TestClient) -> None:
    r = client.post("/v1/webhooks", json={"url": "https://example.com/h",
                                          "secret": "my-own-secret-0123456789"})  # fmt: skip
    assert r.status_code == 201 and r.json()["secret"] == "my-own-secret-0123456789"


def test_private_addresses_and_the_quota(tmp_path: Path) -> None:
    with serve(tmp_path, None, webhook_allow_private=False, webhook_max_per_project=1) as c:
        for url in ("http://127.0.0.1:8000/x", "http://10.1.2.3/x", "http://[::1]/x",
                    "http://169.254.169.254/latest", "http://0.0.0.0/", "http://localhost/x",
                    "http://[::ffff:127.0.0.1]/x"):  # fmt: skip
            r = c.post("/v1/webhooks", json={"url": url})
            assert r.status_code == 422, (url, r.text)
            assert r.json()["detail"][0]["loc"] == ["body", "url"], url
            assert "WEBHOOK_ALLOW_PRIVATE" in r.json()["detail"][0]["msg"]
        assert c.post("/v1/webhooks", json={"url": "https://93.184.216.34/h"}).status_code == 201
        r = c.post("/v1/webhooks", json={"url": "https://93.184.216.34/h2"})
        assert r.status_code == 409 and r.json()["detail"][0]["loc"] == ["quota", "webhooks"]


def test_webhooks_are_scoped_to_their_project(tmp_path: Path) -> None:
    with receiving() as receiver, serve(tmp_path, None, quota_requests_per_s=0, **FAST) as c:
        keys = {}
        for project in ("alpha", "beta"):
            admin = {"Authorization": f"Bearer {keys['admin']}"} if keys else {}
            r = c.post("/v1/admin/keys", json={"project": project, "role": "admin"},
                       headers=admin)  # fmt: skip
            keys.setdefault("admin", r.json()["token"])
            r = c.post("/v1/admin/keys", json={"project": project, "role": "member"},
                       headers={"Authorization": f"Bearer {keys['admin']}"})  # fmt: skip
            keys[project] = r.json()["token"]
        h = {p: {"Authorization": f"Bearer {keys[p]}"} for p in ("alpha", "beta")}
        hook = {p: c.post("/v1/webhooks", json={"url": f"{receiver.base}/ok/{p}"},
                          headers=h[p]).json()["id"] for p in ("alpha", "beta")}  # fmt: skip
        for method, path in (("GET", ""), ("GET", "/deliveries"), ("PATCH", ""), ("DELETE", "")):
            body = {"active": False} if method == "PATCH" else None
            r = c.request(method, f"/v1/webhooks/{hook['alpha']}{path}", json=body,
                          headers=h["beta"])  # fmt: skip
            assert r.status_code == 404, (method, path, r.text)
        assert [w["id"] for w in c.get("/v1/webhooks", headers=h["beta"]).json()["items"]] == [
            hook["beta"]]  # fmt: skip
        job_id = _fit(c, h["alpha"])
        got = receiver.wait("/ok/alpha", 3)
        assert {g.json["data"]["job"]["id"] for g in got} == {job_id}
        assert receiver.at("/ok/beta") == []
        listed = c.get(f"/v1/webhooks/{hook['beta']}/deliveries", headers=h["beta"]).json()
        assert listed["total"] == 0
