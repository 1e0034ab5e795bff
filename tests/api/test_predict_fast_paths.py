"""predict's short paths answer what the long ones did: a JSON body handled directly (its
errors still the route's own), an `.npy` body read in place (others still converted), the model
row reused while its changing columns match, and audit rows written by the writer's thread."""

from __future__ import annotations

import io
import threading
import uuid

import numpy as np
from fastapi.testclient import TestClient

from app.api.audit import AuditWriter
from app.engine.models.model import Model
from app.engine.training.inference import predict
from tests.support import scenario

NPY = "application/x-npy"


def _npy(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    return buf.getvalue()


def _model(client: TestClient, seed: int = 3) -> str:
    r = client.post("/v1/models", json={"config": scenario.MODEL, "seed": seed})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_json_and_npy_bodies_answer_the_engines_bits(client: TestClient) -> None:
    model_id = _model(client)
    x = scenario.X[::9]
    expected = predict(Model.from_config(scenario.MODEL, seed=3), x)
    assert isinstance(expected, np.ndarray)
    path = f"/v1/models/{model_id}/predict"
    as_json = client.post(path, json={"x": x.tolist()})
    assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json"
    assert as_json.text.startswith('{"predictions":[[')  # compact, as JSONResponse wrote it
    np.testing.assert_array_equal(np.array(as_json.json()["predictions"], np.float32), expected)
    for body in (_npy(x), _npy(x.astype(">f4")), _npy(np.asfortranarray(x))):
        r = client.post(path, content=body, headers={"Content-Type": NPY, "Accept": NPY})
        assert r.status_code == 200, r.text
        out = np.load(io.BytesIO(r.content))
        assert out.dtype == expected.dtype and out.tobytes() == expected.tobytes()


def test_a_json_body_that_is_not_plainly_valid_gets_the_routes_own_errors(
    client: TestClient,
) -> None:
    model_id = _model(client)
    path = f"/v1/models/{model_id}/predict"
    headers = {"Content-Type": "application/json"}
    bad_json = client.post(path, content=b'{"x": [[1.0]', headers=headers)
    assert bad_json.status_code == 422 and bad_json.json()["detail"][0]["type"] == "json_invalid"
    unknown = client.post(path, json={"x": [[1.0]], "colour": 1})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "colour"]
    bad_batch = client.post(path, json={"x": [[1.0]], "batch_size": 0})
    assert bad_batch.status_code == 422
    assert bad_batch.json()["detail"][0]["loc"] == ["body", "batch_size"]
    for bad in ("not-a-uuid", model_id.replace("-", "")[:31] + "-0"):
        bad_id = client.post(f"/v1/models/{bad}/predict", json={"x": [[1.0]]})
        assert bad_id.status_code == 422, bad
        assert bad_id.json()["detail"][0]["loc"] == ["path", "model_id"]
    upper = client.post(f"/v1/models/{model_id.upper()}/predict", json={"x": [[1.0]]})
    assert upper.status_code == 200
    missing = client.post(f"/v1/models/{uuid.uuid4()}/predict", json={"x": [[1.0]]})
    assert missing.status_code == 404
    deep = client.post(path, content=b"[" * 100_000 + b"]" * 100_000, headers=headers)
    assert 400 <= deep.status_code < 500


def test_an_npy_body_read_in_place_is_checked_as_a_converted_one_is(client: TestClient) -> None:
    model_id = _model(client)
    path = f"/v1/models/{model_id}/predict"
    headers = {"Content-Type": NPY}
    x = scenario.X[:4].copy()
    x[2, 0] = np.nan
    r = client.post(path, content=_npy(x), headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "x", 2, 0]
    truncated = client.post(path, content=_npy(scenario.X[:4])[:-3], headers=headers)
    assert truncated.status_code == 422 and "truncated" in truncated.text
    wrong_dtype = client.post(path, content=_npy(np.array([["a"]])), headers=headers)
    assert wrong_dtype.status_code == 422
    assert client.post(path, content=b"\x93NUMPY junk", headers=headers).status_code == 422


def test_new_weights_and_a_deleted_model_are_seen_at_once(client: TestClient) -> None:
    model_id = _model(client)
    path = f"/v1/models/{model_id}/predict"
    x = scenario.X[::50]
    before = np.array(client.post(path, json={"x": x.tolist()}).json()["predictions"])
    other = Model.from_config(scenario.MODEL, seed=11)
    weights = [w.tolist() for w in other.get_weights()]
    put = client.put(f"/v1/models/{model_id}/weights", json={"weights": weights})
    assert put.status_code == 200, put.text
    after = np.array(client.post(path, json={"x": x.tolist()}).json()["predictions"], np.float32)
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, predict(other, x))
    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    assert client.post(path, json={"x": x.tolist()}).status_code == 404


def test_the_audit_log_shows_each_predict_once_written(client: TestClient) -> None:
    model_id = _model(client)
    for _ in range(3):
        r = client.post(f"/v1/models/{model_id}/predict", json={"x": [[1.0]]})
        assert r.status_code == 200
    items = client.get("/v1/admin/audit?limit=3").json()["items"]
    assert [(i["action"], i["resource_id"]) for i in items] == [("predict", model_id)] * 3


def test_the_audit_writer_batches_rows_and_flush_waits_for_them(client: TestClient) -> None:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    writer = AuditWriter(ctx, delay=0.2)
    base = {"project_id": None, "key_id": None, "key_prefix": None, "role": "admin",
            "action": "run", "resource_type": "models", "resource_id": None,
            "status_code": 200}  # fmt: skip
    threads = [threading.Thread(target=writer.add, args=({**base, "route": f"POST /t/{i}"},))
               for i in range(20)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.flush()
    items = client.get("/v1/admin/audit?limit=100").json()["items"]
    assert sorted(i["route"] for i in items if i["route"].startswith("POST /t/")) == sorted(
        f"POST /t/{i}" for i in range(20)
    )
    writer.add({**base, "route": "POST /t/last"})
    writer.close()  # writes what is left
    items = client.get("/v1/admin/audit?limit=1").json()["items"]
    assert items[0]["route"] == "POST /t/last"
