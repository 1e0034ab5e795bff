"""The standard predict protocols on the embedded default, checked against their published
documents' examples (adapted to models whose inputs match): TensorFlow Serving's REST predict
(row and columnar formats, inputs by name) and the Open Inference Protocol (KServe V2) in JSON
and with the binary tensor data extension. Every answer equals POST /v1/models/{id}/predict's
bit for bit; what /v1 would queue as a job is a 413; errors are `{"error": ...}` naming the
field."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.models import serving
from tests.api.conftest import serve
from tests.e2e.scenario_checks import wait_for
from tests.support import scenario

MOST_ROWS = 8


def _tensor(layer: str) -> dict[str, Any]:
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [layer, 0, 0]}}


def _layer(cls: str, name: str, config: dict[str, Any], *inputs: Any) -> dict[str, Any]:
    nodes = [{"args": list(inputs), "kwargs": {}}] if inputs else []
    return {"class_name": cls, "name": name, "config": config, "inbound_nodes": nodes}


# TF Serving's named-input example has inputs `signal` (5 numbers) and `sensor` (2 x 2).
NAMED = {"class_name": "Functional", "config": {
    "name": "named",
    "layers": [
        _layer("InputLayer", "signal", {"batch_shape": [None, 5]}),
        _layer("InputLayer", "sensor", {"batch_shape": [None, 2, 2]}),
        _layer("Flatten", "flat", {}, _tensor("sensor")),
        _layer("Concatenate", "cat", {}, [_tensor("signal"), _tensor("flat")]),
        _layer("Dense", "output0", {"units": 2}, _tensor("cat")),
        _layer("Dense", "output1", {"units": 3, "activation": "sigmoid"}, _tensor("cat")),
    ],
    "input_layers": [["signal", 0, 0], ["sensor", 0, 0]],
    "output_layers": [["output0", 0, 0], ["output1", 0, 0]],
}}  # fmt: skip
# The V2 document's example sends integers: a model whose input is int32 ids.
IDS = {"class_name": "Sequential", "config": {"name": "ids", "layers": [
    {"class_name": "InputLayer", "config": {"batch_shape": [None, 2], "dtype": "int32"}},
    {"class_name": "Embedding", "config": {"input_dim": 10, "output_dim": 3}},
    {"class_name": "Flatten", "config": {}},
    {"class_name": "Dense", "config": {"units": 2}},
]}}  # fmt: skip
# TF Serving's row and columnar examples, without the string input `tag`.
SIGNAL = [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]]
SENSOR = [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    path: Path = tmp_path_factory.mktemp("serving")
    with serve(path, None, predict_sync_max_rows=MOST_ROWS) as c:
        yield c


@pytest.fixture(scope="module")
def models(client: TestClient) -> dict[str, str]:
    out = {}
    for key, config in (("seed", scenario.MODEL), ("named", NAMED), ("ids", IDS)):
        r = client.post("/v1/models", json={"config": config, "seed": 3})
        assert r.status_code == 201, r.text
        out[key] = r.json()["id"]
    fit = client.post(f"/v1/models/{out['seed']}/fit", json=scenario.fit_body(epochs=3))
    assert fit.status_code == 202, fit.text
    done = wait_for(client, fit.json()["id"], {"succeeded", "failed"})  # type: ignore[arg-type]
    assert done["status"] == "succeeded", done  # trained weights, fixed from here on
    return out


def _v1(client: TestClient, model: str, x: Any) -> Any:
    r = client.post(f"/v1/models/{model}/predict", json={"x": x})
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def _v1_arrays(client: TestClient, model: str, x: Any) -> dict[str, np.ndarray]:
    r = client.post(f"/v1/models/{model}/predict", json={"x": x},
                    headers={"Accept": "application/x-npz"})  # fmt: skip
    assert r.status_code == 200, r.text
    with np.load(io.BytesIO(r.content)) as npz:
        return {name: npz[name] for name in npz.files}


def _error(r: Any, status: int, *words: str) -> str:
    assert r.status_code == status, r.text
    message = r.json()["error"]
    assert all(w in message for w in words), message
    return str(message)


# -- TensorFlow Serving ------------------------------------------------------------------------
def test_tfserving_row_and_columnar_equal_v1_predict(client: TestClient, models: dict) -> None:
    # The document's first example, {"instances": [1.0, 2.0, 5.0]}, one sample a row here.
    model = models["seed"]
    rows = [[1.0], [2.0], [5.0]]
    v1 = _v1(client, model, rows)
    r = client.post(f"/v1/models/{model}:predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": v1}
    r = client.post(f"/v1/models/{model}:predict",
                    json={"signature_name": "serving_default", "inputs": rows})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"outputs": v1}
    assert r.headers["cache-control"] == "no-store"


def test_tfserving_named_inputs_and_outputs(client: TestClient, models: dict) -> None:
    model = models["named"]
    v1 = _v1(client, model, {"signal": SIGNAL, "sensor": SENSOR})
    instances = [{"signal": s, "sensor": t} for s, t in zip(SIGNAL, SENSOR, strict=True)]
    r = client.post(f"/v1/models/{model}:predict", json={"instances": instances})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == [
        {"output0": v1["output0"][i], "output1": v1["output1"][i]} for i in range(2)
    ]
    r = client.post(f"/v1/models/{model}:predict",
                    json={"inputs": {"signal": SIGNAL, "sensor": SENSOR}})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"outputs": v1}
    # An error names the instance, then the input.
    bad = [instances[0], {**instances[1], "signal": [1, 2, float("nan"), 4, 5]}]
    r = client.post(f"/v1/models/{model}:predict", content=json.dumps({"instances": bad}),
                    headers={"Content-Type": "application/json"})  # fmt: skip
    _error(r, 400, "body.instances.1.signal.2", "finite")
    # The document's example as published also sends a string input, `tag`.
    tagged = [{"tag": t, **i} for t, i in zip(("foo", "bar"), instances, strict=True)]
    r = client.post(f"/v1/models/{model}:predict", json={"instances": tagged})
    _error(r, 400, "body.instances", "tag")


def test_tfserving_errors_name_the_field(client: TestClient, models: dict) -> None:
    url = f"/v1/models/{models['seed']}:predict"
    _error(client.post(url, json={"signature_name": "other", "instances": [[1.0]]}), 400,
           "body.signature_name", "serving_default")  # fmt: skip
    _error(client.post(url, json={"instances": [[1.0]], "inputs": [[1.0]]}), 400, "exactly one")
    _error(client.post(url, json={}), 400, "exactly one")
    _error(client.post(url, json={"instances": []}), 400, "body.instances", "non-empty")
    _error(client.post(url, json={"instances": [[1.0, 2.0]]}), 400, "body.instances", "shape")
    _error(client.post(url, json={"instances": [{"b64": "AAAA"}]}), 400, "b64")
    _error(client.post(url, json={"instances": [{"a": [1]}, [2]]}), 400, "body.instances.1")
    _error(client.post(url, json={"instances": [[1.0]], "extra": 1}), 400, "body.extra")
    missing = "/v1/models/00000000-0000-0000-0000-000000000000:predict"
    _error(client.post(missing, json={"instances": [[1.0]]}), 404, "does not exist")
    _error(client.post("/v1/models/nope:predict", json={"instances": [[1.0]]}), 400,
           "path.model_id")  # fmt: skip
    body = client.post(url, content=b"{oops", headers={"Content-Type": "application/json"})
    _error(body, 400, "body")


def test_what_v1_would_queue_is_a_413(client: TestClient, models: dict) -> None:
    many = [[float(i)] for i in range(MOST_ROWS + 1)]
    model = models["seed"]
    r = client.post(f"/v1/models/{model}:predict", json={"instances": many})
    _error(r, 413, "body.instances", "PREDICT_SYNC_MAX_ROWS", f"/v1/models/{model}/predict")
    v2 = {"inputs": [{"name": "input_layer", "shape": [len(many), 1], "datatype": "FP32",
                      "data": many}]}  # fmt: skip
    _error(client.post(f"/v2/models/{model}/infer", json=v2), 413, "PREDICT_SYNC_MAX_ROWS")
    # The body limit (2 MB here) answers in the protocol's shape too.
    big = {"instances": [[0.5]] * 400_000}
    _error(client.post(f"/v1/models/{model}:predict", json=big), 413, "exceeds")


# -- Open Inference Protocol -------------------------------------------------------------------
def test_v2_health_and_metadata(client: TestClient, models: dict) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    server = client.get("/v2").json()
    assert server["name"] == "fitapi" and "binary_tensor_data" in server["extensions"]
    named = client.get(f"/v2/models/{models['named']}")
    assert named.status_code == 200, named.text
    assert named.json() == {
        "name": models["named"], "versions": ["1"], "platform": "fitapi_keras",
        "inputs": [{"name": "signal", "datatype": "FP32", "shape": [-1, 5]},
                   {"name": "sensor", "datatype": "FP32", "shape": [-1, 2, 2]}],
        "outputs": [{"name": "output0", "datatype": "FP32", "shape": [-1, 2]},
                    {"name": "output1", "datatype": "FP32", "shape": [-1, 3]}],
    }  # fmt: skip
    ids = client.get(f"/v2/models/{models['ids']}").json()
    assert ids["inputs"] == [{"name": ids["inputs"][0]["name"], "datatype": "INT32",
                              "shape": [-1, 2]}]  # fmt: skip
    ok = client.get(f"/v2/models/{models['ids']}/ready")
    assert ok.json() == {"name": models["ids"], "ready": True}
    assert ok.headers["cache-control"] == "no-store"
    _error(client.get("/v2/models/00000000-0000-0000-0000-000000000000/ready"), 404, "exist")


def test_v2_infer_json_equals_v1_predict(client: TestClient, models: dict) -> None:
    """The document's JSON example: id echoed, tensors flat or nested, outputs by name."""
    model = models["named"]
    v1 = _v1(client, model, {"signal": SIGNAL, "sensor": SENSOR})
    body = {
        "id": "42",
        "inputs": [
            {"name": "sensor", "shape": [2, 2, 2], "datatype": "INT64",
             "data": np.asarray(SENSOR).ravel().tolist()},
            {"name": "signal", "shape": [2, 5], "datatype": "FP32", "data": SIGNAL},
        ],
        "outputs": [{"name": "output1"}],
    }  # fmt: skip
    r = client.post(f"/v2/models/{model}/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"model_name": model, "model_version": "1", "id": "42", "outputs": [
        {"name": "output1", "shape": [2, 3], "datatype": "FP32",
         "data": [v for row in v1["output1"] for v in row]}]}  # fmt: skip
    every = client.post(f"/v2/models/{model}/infer", json={"inputs": body["inputs"]}).json()
    assert [o["name"] for o in every["outputs"]] == ["output0", "output1"] and "id" not in every
    ids = models["ids"]
    name = client.get(f"/v2/models/{ids}").json()["inputs"][0]["name"]
    x = [[1, 2], [3, 9], [0, 0]]
    r = client.post(
        f"/v2/models/{ids}/infer",
        json={
            "inputs": [
                {"name": name, "shape": [3, 2], "datatype": "INT32", "data": [1, 2, 3, 9, 0, 0]}
            ]
        },
    )
    assert r.json()["outputs"][0]["data"] == [v for row in _v1(client, ids, x) for v in row]


def _framed(header: dict[str, Any], *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head)),
                                    "Content-Type": "application/octet-stream"}  # fmt: skip


def _unframed(r: Any) -> tuple[dict[str, Any], bytes]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    n = int(r.headers["inference-header-content-length"])
    return json.loads(r.content[:n]), r.content[n:]


def test_v2_binary_tensor_data_equals_v1_predict(client: TestClient, models: dict) -> None:
    """The extension's example: one input in binary, one in JSON; output0 asked in binary,
    output1 in JSON; the answer's header, then output0's bytes."""
    model = models["named"]
    want = _v1_arrays(client, model, {"signal": SIGNAL, "sensor": SENSOR})
    sensor = np.asarray(SENSOR, dtype="<f4")
    content, headers = _framed({
        "model_name": model,
        "inputs": [
            {"name": "sensor", "shape": [2, 2, 2], "datatype": "FP32",
             "parameters": {"binary_data_size": sensor.nbytes}},
            {"name": "signal", "shape": [2, 5], "datatype": "FP32", "data": SIGNAL},
        ],
        "outputs": [{"name": "output0", "parameters": {"binary_data": True}},
                    {"name": "output1"}],
    }, sensor.tobytes())  # fmt: skip
    header, rest = _unframed(client.post(f"/v2/models/{model}/infer", content=content,
                                         headers=headers))  # fmt: skip
    out0, out1 = header["outputs"]
    assert out0 == {"name": "output0", "shape": [2, 2], "datatype": "FP32",
                    "parameters": {"binary_data_size": 16}}  # fmt: skip
    got = np.frombuffer(rest, dtype="<f4").reshape(2, 2)
    assert got.tobytes() == want["output0"].astype("<f4").tobytes()
    assert out1["data"] == want["output1"].ravel().tolist()
    # Triton's client sends JSON with no Content-Type at all.
    plain = {"inputs": [{"name": "signal", "shape": [2, 5], "datatype": "FP32", "data": SIGNAL},
                        {"name": "sensor", "shape": [2, 2, 2], "datatype": "FP32",
                         "data": SENSOR}]}  # fmt: skip
    r = client.post(f"/v2/models/{model}/infer", content=json.dumps(plain).encode())
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == want["output0"].ravel().tolist()
    # Every output in binary, asked once in the request's parameters; no Content-Type needed
    # where the header frames the body.
    signal = np.asarray(SIGNAL, dtype="<f8")
    content, headers = _framed({"parameters": {"binary_data_output": True}, "inputs": [
        {"name": "signal", "shape": [2, 5], "datatype": "FP64",
         "parameters": {"binary_data_size": signal.nbytes}},
        {"name": "sensor", "shape": [2, 2, 2], "datatype": "FP32",
         "parameters": {"binary_data_size": sensor.nbytes}},
    ]}, signal.tobytes(), sensor.tobytes())  # fmt: skip
    del headers["Content-Type"]
    header, rest = _unframed(client.post(f"/v2/models/{model}/infer", content=content,
                                         headers=headers))  # fmt: skip
    assert rest == want["output0"].astype("<f4").tobytes() + want["output1"].astype("<f4").tobytes()


def test_v2_errors_name_the_field(client: TestClient, models: dict) -> None:
    model = models["seed"]
    url = f"/v2/models/{model}/infer"

    def one(**tensor: Any) -> dict[str, Any]:
        return {"inputs": [{"name": "input_layer", "shape": [2, 1], "datatype": "FP32",
                            "data": [1.0, 2.0], **tensor}]}  # fmt: skip

    _error(client.post(url, json=one(datatype="BYTES", data=["a", "b"])), 400,
           "body.inputs.0.datatype", "BYTES")  # fmt: skip
    _error(client.post(url, json=one(datatype="FP8")), 400, "body.inputs.0.datatype", "FP32")
    _error(client.post(url, json=one(name="other")), 400, "body.inputs.0.name", "input_layer")
    _error(client.post(url, json=one(shape=[3, 1])), 400, "body.inputs.0.data", "needs 3")
    _error(client.post(url, json=one(shape=[1, 2])), 400, "body.inputs.0.data", "shape")
    _error(client.post(url, json=one(datatype="INT32", data=[1.5, 2])), 400, "integers")
    _error(client.post(url, json=one(datatype="UINT8", data=[1, 300])), 400, "range of UINT8")
    _error(client.post(url, json=one(data=[1.0, "x"])), 400, "body.inputs.0.data")
    _error(client.post(url, json=one(data=None)), 400, "body.inputs.0.data", "required")
    _error(client.post(url, json={**one(), "outputs": [{"name": "nope"}]}), 400,
           "body.outputs.0.name", "dense_1")  # fmt: skip
    _error(client.post(url, json={**one(), "parameters": {"binary_data_output": "yes"}}), 400,
           "binary_data_output")  # fmt: skip
    _error(client.post(url, json={"inputs": one()["inputs"] * 2}), 400, "second time")
    _error(client.post(url, json={**one(), "model_name": "other"}), 400, "body.model_name")
    _error(client.post(url, json={"inputs": [{"name": "input_layer"}]}), 400, "body.inputs.0")
    gone = "/v2/models/00000000-0000-0000-0000-000000000000/infer"
    _error(client.post(gone, json=one()), 404, "does not exist")
    # Binary framing.
    blob = np.asarray([1.0, 2.0], dtype="<f4").tobytes()
    sized = one(data=None, parameters={"binary_data_size": 8})
    content, headers = _framed(sized, blob)
    _error(client.post(url, content=content + b"xx", headers=headers), 400,
           "Inference-Header-Content-Length", "2 bytes")  # fmt: skip
    _error(client.post(url, content=content[:-1], headers=headers), 400, "binary_data_size")
    wrong = one(data=None, parameters={"binary_data_size": 4})
    content, headers = _framed(wrong, blob[:4])
    _error(client.post(url, content=content, headers=headers), 400, "must be the tensor's bytes")
    content, headers = _framed(sized, blob)
    headers["Inference-Header-Content-Length"] = str(len(content) + 1)
    _error(client.post(url, content=content, headers=headers), 400,
           "header.Inference-Header-Content-Length")  # fmt: skip
    headers["Inference-Header-Content-Length"] = "3"
    _error(client.post(url, content=content, headers=headers), 400, "not a JSON inference")
    r = client.post(url, content=b"x", headers={"Content-Type": "text/plain"})
    _error(r, 415, "application/octet-stream")


def test_an_unexpected_failure_keeps_the_protocol_shape(
    client: TestClient, models: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("/secret/path in a message that must not leak")

    monkeypatch.setattr(serving, "v2_metadata", broken)
    quiet = TestClient(client.app, raise_server_exceptions=False)
    r = quiet.get(f"/v2/models/{models['seed']}")
    assert r.status_code == 500 and r.json()["error"] == "internal error", r.text
    assert "secret" not in r.text


def test_a_bfloat16_input_is_advertised_and_taken_as_fp32(client: TestClient) -> None:
    """numpy has no bfloat16: the metadata says FP32, which infer takes and the model casts."""
    config = {"class_name": "Sequential", "config": {"name": "bf16", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 2], "dtype": "bfloat16"}},
        {"class_name": "Dense", "config": {"units": 1}},
    ]}}  # fmt: skip
    r = client.post("/v1/models", json={"config": config, "seed": 1})
    assert r.status_code == 201, r.text
    model = r.json()["id"]
    meta = client.get(f"/v2/models/{model}").json()
    assert meta["inputs"][0]["datatype"] == "FP32"
    tensor = {**meta["inputs"][0], "shape": [2, 2], "data": [0.5, 1.0, -2.0, 3.0]}
    infer = client.post(f"/v2/models/{model}/infer", json={"inputs": [tensor]})
    assert infer.status_code == 200, infer.text
    v1 = _v1(client, model, [[0.5, 1.0], [-2.0, 3.0]])
    assert infer.json()["outputs"][0]["data"] == [v for row in v1 for v in row]
