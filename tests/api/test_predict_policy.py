"""predict and predict_on_batch over HTTP run under the dtype policy of the model's compile
spec, as Keras's predict computes in the policy's half type; without a spec, in float32."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from app.engine.models.model import Model
from app.engine.training.inference import predict
from tests.support import scenario


def test_predict_follows_the_compiled_dtype_policy(client: TestClient) -> None:
    model_id = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 7}).json()["id"]
    x = scenario.X[::7]
    engine = Model.from_config(scenario.MODEL, seed=7)
    routes = ("predict", "predict_on_batch")
    for route in routes:  # not compiled yet: float32
        r = client.post(f"/v1/models/{model_id}/{route}", json={"x": x.tolist()})
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(np.array(r.json()["predictions"], np.float32),
                                      predict(engine, x))  # fmt: skip
    spec = {**scenario.COMPILE, "dtype_policy": "mixed_bfloat16"}
    assert client.post(f"/v1/models/{model_id}/compile", json=spec).status_code == 200
    half = predict(engine, x, dtype_policy="mixed_bfloat16")
    assert not np.array_equal(half, predict(engine, x))
    for route in routes:
        r = client.post(f"/v1/models/{model_id}/{route}", json={"x": x.tolist()})
        np.testing.assert_array_equal(np.array(r.json()["predictions"], np.float32), half)
