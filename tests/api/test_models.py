"""Model routes on the embedded default: create, summary, list, read, delete, OpenAPI."""

from __future__ import annotations

import copy
import json

from fastapi.testclient import TestClient

from tests.support import scenario

KERAS_TO_JSON = json.loads("""
{"module": "keras", "class_name": "Sequential", "registered_name": null,
 "config": {"name": "seed", "trainable": true,
  "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
            "registered_name": null},
  "layers": [
   {"module": "keras.layers", "class_name": "InputLayer", "registered_name": null,
    "config": {"batch_shape": [null, 1], "dtype": "float32", "sparse": false, "ragged": false,
               "name": "input_layer", "optional": false}},
   {"module": "keras.layers", "class_name": "Normalization", "registered_name": null,
    "build_config": {"input_shape": [null, 1]},
    "config": {"name": "normalization", "trainable": true,
               "dtype": {"module": "keras", "class_name": "DTypePolicy",
                         "config": {"name": "float32"}, "registered_name": null},
               "axis": [-1], "invert": false, "mean": null, "variance": null}},
   {"module": "keras.layers", "class_name": "Dense", "registered_name": null,
    "build_config": {"input_shape": [null, 1]},
    "config": {"name": "dense", "trainable": true,
               "dtype": {"module": "keras", "class_name": "DTypePolicy",
                         "config": {"name": "float32"}, "registered_name": null},
               "units": 1, "activation": "relu", "use_bias": true,
               "kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform",
                                      "config": {"seed": null}, "registered_name": null},
               "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros",
                                    "config": {}, "registered_name": null},
               "kernel_regularizer": null, "bias_regularizer": null, "kernel_constraint": null,
               "bias_constraint": null, "quantization_config": null}},
   {"module": "keras.layers", "class_name": "Dense", "registered_name": null,
    "build_config": {"input_shape": [null, 1]},
    "config": {"name": "dense_1", "trainable": true, "dtype": "float32", "units": 1,
               "activation": "sigmoid", "use_bias": true}}],
  "build_input_shape": [null, 1]},
 "build_config": {"input_shape": [null, 1]}, "compile_config": {}}
""")


def test_create_hand_written_and_keras_json(client: TestClient) -> None:
    for config in (scenario.MODEL, KERAS_TO_JSON):
        r = client.post("/v1/models", json={"config": config, "seed": 5})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["summary"]["total_params"] == 7
        assert body["summary"]["non_trainable_params"] == 3
        assert [(lay["name"], lay["output_shape"]) for lay in body["summary"]["layers"]] == [
            ("normalization", [None, 1]),
            ("dense", [None, 1]),
            ("dense_1", [None, 1]),
        ]
        assert body["weights_checkpoint_id"] is None


def test_list_get_delete(client: TestClient) -> None:
    ids = [
        client.post("/v1/models", json={"config": scenario.MODEL}).json()["id"] for _ in range(3)
    ]
    page = client.get("/v1/models", params={"limit": 2}).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    assert client.get(f"/v1/models/{ids[0]}").json()["id"] == ids[0]
    assert client.delete(f"/v1/models/{ids[0]}").status_code == 204
    assert client.get(f"/v1/models/{ids[0]}").status_code == 404
    assert client.get("/v1/models").json()["total"] == 2


def test_seed_makes_initial_weights_reproducible(client: TestClient) -> None:
    x = {"x": scenario.X[:5].tolist()}
    a = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 11}).json()["id"]
    b = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 11}).json()["id"]
    pa = client.post(f"/v1/models/{a}/predict", json=x).json()
    pb = client.post(f"/v1/models/{b}/predict", json=x).json()
    assert pa == pb


def test_openapi_documents_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/v1/models", "post"), ("/v1/models", "get"), ("/v1/models/{model_id}", "get"),
        ("/v1/models/{model_id}", "delete"), ("/v1/models/{model_id}/fit", "post"),
        ("/v1/models/{model_id}/evaluate", "post"), ("/v1/models/{model_id}/predict", "post"),
        ("/v1/jobs/{job_id}", "get"), ("/v1/jobs/{job_id}/logs", "get"),
        ("/v1/jobs/{job_id}/events", "get"), ("/v1/jobs/{job_id}/cancel", "post"),
    ]:  # fmt: skip
        assert method in paths[path], (path, method)
    schemas = spec["components"]["schemas"]
    for name in ("ModelCreate", "FitRequest", "EvaluateRequest", "PredictRequest"):
        assert schemas[name].get("examples"), name
    # Every JSON request body has an example, and every route says what it returns.
    for path, operations in paths.items():
        for method, op in operations.items():
            assert op.get("summary") and op.get("responses"), (path, method)
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            ref = body.get("schema", {}).get("$ref")
            if ref is not None:
                assert schemas[ref.rsplit("/", 1)[-1]].get("examples"), (path, method)


def test_fit_on_embedded_default_updates_model_weights(client: TestClient) -> None:
    model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 3}).json()
    body = copy.deepcopy(scenario.fit_body(epochs=3, callbacks=[]))
    job = client.post(f"/v1/models/{model['id']}/fit", json=body).json()
    from tests.e2e.scenario_checks import wait_for

    done = wait_for(client, job["id"], {"succeeded", "failed"})  # type: ignore[arg-type]
    assert done["status"] == "succeeded", done
    assert done["epochs_done"] == 3 and len(done["history"]["loss"]) == 3
    after = client.get(f"/v1/models/{model['id']}").json()
    assert after["weights_checkpoint_id"] is not None
    assert after["compile"]["loss"] == "binary_crossentropy"
    # evaluate without a compile spec uses the one the fit used.
    r = client.post(f"/v1/models/{model['id']}/evaluate",
                    json={"x": body["x"], "y": body["y"], "batch_size": 128})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"loss": done["history"]["val_loss"][-1],
                        "accuracy": done["history"]["val_accuracy"][-1]}  # fmt: skip
