"""The tenant matrix, generated from the OpenAPI document so that a new route cannot be missed:
two projects, three roles, every operation, on a resource of each project. Across projects a
resource is a 404 (never a 403: existence does not leak), a role too weak is a 403, no key is a
401, and no list or stream shows another project's ids."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import serve
from tests.e2e.harness import poll
from tests.support import scenario

X = [[0.5], [1.5], [2.5], [3.5]]
Y = [0.0, 0.0, 1.0, 1.0]
XY = {"x": X, "y": Y}
# A body for every operation that takes one; a new route without an entry fails the matrix.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/models"): {"config": scenario.MODEL, "seed": 1},
    ("POST", "/v1/models/{model_id}/compile"): scenario.COMPILE,
    ("POST", "/v1/models/{model_id}/train_on_batch"): XY,
    ("POST", "/v1/models/{model_id}/test_on_batch"): XY,
    ("POST", "/v1/models/{model_id}/predict_on_batch"): {"x": X},
    ("POST", "/v1/models/{model_id}/adapt"): {"x": X},
    ("PUT", "/v1/models/{model_id}/weights"): "weights",  # the caller's own model's weights
    ("POST", "/v1/models/import"): "keras",
    ("POST", "/v1/models/{model_id}/fit"): {**XY, "epochs": 1},
    ("POST", "/v1/models/{model_id}/evaluate"): XY,
    ("POST", "/v1/models/{model_id}/predict"): {"x": X},
    ("POST", "/v1/models/{model_id}:predict"): {"instances": X},
    ("POST", "/v2/models/{model_id}/infer"): {
        "inputs": [{"name": "input_layer", "shape": [4, 1], "datatype": "FP32", "data": X}]
    },
    ("POST", "/v1/jobs/{job_id}/resume"): {"epochs": 2},
    ("POST", "/v1/datasets"): "npy",
    ("POST", "/v1/admin/keys"): {"project": "third", "role": "viewer"},
    ("PATCH", "/v1/admin/projects/{project}/quotas"): {"models": 500},
    ("POST", "/v1/webhooks"): {"url": "http://127.0.0.1:9/hook"},
    ("PATCH", "/v1/webhooks/{webhook_id}"): {"description": "changed"},
}
PROJECTS = ("alpha", "beta")
# Open to anyone: liveness, and the Open Inference Protocol's health and server metadata.
PUBLIC = ("/healthz", "/v2", "/v2/health/live", "/v2/health/ready")
ROLES = ("viewer", "member", "admin")


def _npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(X, dtype=np.float32))
    return buf.getvalue()


class World:
    """Two projects, a key of each role in each, and a model, a finished fit job, a dataset
    and a webhook (with the fit's deliveries) in each."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.keys: dict[tuple[str, str], str] = {}
        self.prefixes: dict[str, str] = {}
        for project in PROJECTS:
            for role in reversed(ROLES):  # alpha's admin first: it creates the others
                r = client.post("/v1/admin/keys", json={"project": project, "role": role},
                                headers=self.auth(("alpha", "admin")))  # fmt: skip
                assert r.status_code == 201, r.text
                self.keys[(project, role)] = r.json()["token"]
                self.prefixes[project] = r.json()["prefix"]
        self.ids: dict[str, dict[str, str]] = {p: self._resources(p) for p in PROJECTS}

    def auth(self, who: tuple[str, str] | None) -> dict[str, str]:
        if who is None or who not in self.keys:
            return {}
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def _resources(self, project: str) -> dict[str, str]:
        h = self.auth((project, "member"))
        c = self.client
        # Registered first, so that the fit below leaves deliveries (to a closed port).
        hook = c.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}, headers=h)
        assert hook.status_code == 201, hook.text
        webhook_id = hook.json()["id"]
        model = c.post("/v1/models", json={"config": scenario.MODEL, "seed": 1}, headers=h)
        model_id = model.json()["id"]
        assert c.post(f"/v1/models/{model_id}/compile", json=scenario.COMPILE,
                      headers=h).status_code == 200  # fmt: skip
        job = c.post(f"/v1/models/{model_id}/fit", json={**XY, "epochs": 1}, headers=h)
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        poll(lambda: c.get(f"/v1/jobs/{job_id}", headers=h).json()["status"] == "succeeded",
             "the fit's end")  # fmt: skip
        ds = c.post("/v1/datasets", content=_npy(), headers={**h, "Content-Type":
                                                              "application/x-npy"})  # fmt: skip
        assert ds.status_code == 201, ds.text
        deliveries = c.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=h).json()["items"]
        assert deliveries, "the fit left no webhook deliveries"
        return {"model_id": model_id, "job_id": job_id, "dataset_id": ds.json()["id"],
                "webhook_id": webhook_id, "delivery_id": deliveries[0]["id"],
                "checkpoint": "latest", "name": "x", "project": project,
                "key": self.prefixes[project]}  # fmt: skip

    def request(self, method: str, path: str, owner: str, who: tuple[str, str] | None) -> Any:
        """`method path` on `owner`'s resources, as `who`."""
        url = path.format(**self.ids[owner])
        headers = self.auth(who)
        body = BODIES.get((method, path))
        binary = {"keras": ("application/zip", b"PK\x05\x06" + bytes(18)),
                  "npy": ("application/x-npy", _npy())}  # fmt: skip
        if body == "weights":  # valid weights (every model here has the same shapes)
            project = who[0] if who else owner
            own = self.ids[project]["model_id"]
            got = self.client.get(
                f"/v1/models/{own}/weights", headers=self.auth((project, "admin"))
            )
            binary["weights"] = ("application/octet-stream", got.content)
        if isinstance(body, str):
            media, content = binary[body]
            headers = {**headers, "Content-Type": media}
            return self.client.request(method, url, content=content, headers=headers)
        if body is not None:
            return self.client.request(method, url, json=body, headers=headers)
        return self.client.request(method, url, headers=headers)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    path: Path = tmp_path_factory.mktemp("tenancy")
    with serve(path, None, quota_requests_per_s=0) as client:
        yield World(client)


def _operations(client: TestClient) -> list[tuple[str, str]]:
    spec = client.get("/openapi.json").json()
    ops = [(m.upper(), p) for p, o in spec["paths"].items() for m in o if p not in PUBLIC]
    assert len(ops) >= 37
    return ops


def test_the_openapi_document_declares_the_bearer_scheme(world: World) -> None:
    spec = world.client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["APIKey"] == {
        **spec["components"]["securitySchemes"]["APIKey"],
        "type": "http",
        "scheme": "bearer",
    }
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if path not in PUBLIC:
                assert op.get("security") == [{"APIKey": []}], (method, path)
    # Authentication is on now: /docs no longer says single-user.
    assert "Single-user mode" not in spec["info"]["description"]


def test_no_key_is_401_with_www_authenticate(world: World) -> None:
    for method, path in _operations(world.client):
        r = world.request(method, path, "alpha", None)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Bearer"), (method, path)
        if path.startswith("/v2/") or path.endswith(":predict"):  # the protocols' error shape
            assert r.json()["error"].startswith("header.Authorization"), (method, path, r.text)
        bad = world.client.request(method, path.format(**world.ids["alpha"]),
                                   headers={"Authorization": "Bearer fitapi_nope_x"})  # fmt: skip
        assert bad.status_code == 401 and "invalid_token" in bad.headers["WWW-Authenticate"]
    for path in PUBLIC:
        assert world.client.get(path).status_code == 200, path


def test_a_weak_role_is_403(world: World) -> None:
    for method, path in _operations(world.client):
        admin_only = path.startswith("/v1/admin")
        for role in ("viewer", "member"):
            weak = admin_only or (role == "viewer" and method not in ("GET", "HEAD"))
            if not weak:
                continue
            r = world.request(method, path, "alpha", ("alpha", role))
            assert r.status_code == 403, (method, path, role, r.status_code, r.text)


def test_another_projects_resources_are_404_and_own_ones_are_reachable(world: World) -> None:
    """Members and viewers of alpha see beta's resources as missing, for every operation on a
    resource; on their own, nothing is a 401, 403 or 404. Destructive operations on their own
    resources are left out so the world stays whole."""
    for method, path in _operations(world.client):
        if path.startswith("/v1/admin") or "{" not in path:
            continue
        for role in ("viewer", "member"):
            if role == "viewer" and method not in ("GET", "HEAD"):
                continue
            foreign = world.request(method, path, "beta", ("alpha", role))
            assert foreign.status_code == 404, (method, path, role, foreign.text)
            if method == "DELETE":
                continue
            own = world.request(method, path, "alpha", ("alpha", role))
            assert own.status_code not in (401, 403, 404), (method, path, role, own.text)


def test_admins_reach_every_project(world: World) -> None:
    for method, path in _operations(world.client):
        if method != "GET" or path.startswith("/v1/admin"):
            continue
        r = world.request(method, path, "beta", ("alpha", "admin"))
        assert r.status_code in (200, 204), (method, path, r.status_code, r.text)


def test_no_list_or_stream_shows_another_projects_ids(world: World) -> None:
    foreign = [v for k, v in world.ids["beta"].items() if k.endswith("_id")]
    for method, path in _operations(world.client):
        if method != "GET" or path.startswith("/v1/admin"):
            continue
        for role in ("viewer", "member"):
            r = world.request(method, path, "alpha", ("alpha", role))
            assert not any(i in r.text for i in foreign), (method, path, role)
    # A dataset reference of another project inside a fit body does not exist either.
    h = world.auth(("alpha", "member"))
    ref = {"dataset": world.ids["beta"]["dataset_id"], "array": "x"}
    model = world.ids["alpha"]["model_id"]
    for route, body in (("fit", {"x": ref, "y": Y, "epochs": 1}), ("predict", {"x": ref}),
                        ("evaluate", {"x": ref, "y": Y})):  # fmt: skip
        r = world.client.post(f"/v1/models/{model}/{route}", json=body, headers=h)
        assert r.status_code == 422 and "does not exist" in r.text, (route, r.text)
    # Nor another project's job as a checkpoint source.
    r = world.client.post(f"/v1/models/{model}/predict", headers=h, json={
        "x": X, "job_id": world.ids["beta"]["job_id"], "checkpoint": "latest"})  # fmt: skip
    assert r.status_code == 404, r.text


def test_a_revoked_key_is_refused(world: World) -> None:
    admin = world.auth(("alpha", "admin"))
    r = world.client.post("/v1/admin/keys", json={"project": "gamma", "role": "member"},
                          headers=admin)  # fmt: skip
    token, prefix = r.json()["token"], r.json()["prefix"]
    assert (
        world.client.get("/v1/models", headers={"Authorization": f"Bearer {token}"}).json()["items"]
        == []
    )  # a new project sees nothing
    out = world.client.post(f"/v1/admin/keys/{prefix}/revoke", headers=admin)
    assert out.status_code == 200 and out.json()["revoked_at"] is not None
    again = world.client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 401
    listed = world.client.get("/v1/admin/keys", headers=admin).json()["items"]
    assert all("token" not in k for k in listed) and len(listed) >= 7


def test_roles_hold_behind_a_root_path(world: World) -> None:
    """Behind a proxy that mounts the API under a prefix (uvicorn --root-path), the role is
    decided by the route, not the raw path, and changes are still audited."""
    proxied = TestClient(world.client.app, root_path="/api")
    admin = world.auth(("alpha", "admin"))
    for role in ("viewer", "member"):
        h = world.auth(("alpha", role))
        assert proxied.get("/api/v1/admin/keys", headers=h).status_code == 403
        r = proxied.post("/api/v1/admin/keys", json={"project": "x", "role": "admin"}, headers=h)
        assert r.status_code == 403, r.text
    assert proxied.get("/api/v1/admin/keys", headers=admin).status_code == 200
    model = proxied.post("/api/v1/models", json={"config": scenario.MODEL},
                         headers=world.auth(("alpha", "member"))).json()["id"]  # fmt: skip
    audit = world.client.get("/v1/admin/audit?limit=1", headers=admin).json()["items"]
    assert audit[0]["resource_id"] == model and audit[0]["route"] == "POST /v1/models"


def test_a_body_is_not_read_before_the_key_is_checked(world: World) -> None:
    r = world.client.post("/v1/models", content=b"{not json", headers={
        "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 401, r.text


def test_the_dataset_sha256_filter_sees_only_the_callers_project(world: World) -> None:
    """Both projects uploaded the same bytes: each finds only its own dataset by their sha256."""
    import hashlib

    digest = hashlib.sha256(_npy()).hexdigest()
    for project in PROJECTS:
        r = world.client.get(f"/v1/datasets?sha256={digest}",
                             headers=world.auth((project, "viewer")))  # fmt: skip
        assert r.status_code == 200, r.text
        assert [d["id"] for d in r.json()["items"]] == [world.ids[project]["dataset_id"]]
    # An admin sees every project's datasets, but looks up bytes to reuse only in its own:
    # its jobs could not read another project's.
    admin = world.auth(("alpha", "admin"))
    listed = {d["id"] for d in world.client.get("/v1/datasets?limit=100",
                                                 headers=admin).json()["items"]}  # fmt: skip
    assert {world.ids[p]["dataset_id"] for p in PROJECTS} <= listed
    r = world.client.get(f"/v1/datasets?sha256={digest}", headers=admin)
    assert r.status_code == 200, r.text
    assert [d["id"] for d in r.json()["items"]] == [world.ids["alpha"]["dataset_id"]]
    assert r.json()["total"] == 1


def test_the_predict_protocols_hold_keys_roles_and_projects(world: World) -> None:
    """V2's binary infer (its own handler) checks the caller as every route does; both
    protocols' predictions are audited like /v1 predict."""
    x = np.asarray(X, dtype="<f4")
    tensor = {"name": "input_layer", "shape": [4, 1], "datatype": "FP32",
              "parameters": {"binary_data_size": x.nbytes}}  # fmt: skip
    head = json.dumps({"inputs": [tensor]}).encode()
    framing = {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(len(head))}  # fmt: skip

    def infer(owner: str, who: tuple[str, str] | None) -> Any:
        url = f"/v2/models/{world.ids[owner]['model_id']}/infer"
        return world.client.post(url, content=head + x.tobytes(),
                                 headers={**framing, **world.auth(who)})  # fmt: skip

    assert infer("alpha", None).status_code == 401
    assert infer("alpha", ("alpha", "viewer")).status_code == 403
    assert infer("beta", ("alpha", "member")).status_code == 404
    assert infer("alpha", ("alpha", "member")).status_code == 200
    model = world.ids["alpha"]["model_id"]
    tf = world.client.post(f"/v1/models/{model}:predict", json={"instances": X},
                           headers=world.auth(("alpha", "member")))  # fmt: skip
    assert tf.status_code == 200, tf.text
    admin = world.auth(("alpha", "admin"))
    audit = world.client.get("/v1/admin/audit?limit=2", headers=admin).json()["items"]
    assert [(a["action"], a["route"], a["resource_id"]) for a in audit] == [
        ("predict", "POST /v1/models/{model_id}:predict", model),
        ("infer", "POST /v2/models/{model_id}/infer", model),
    ]
