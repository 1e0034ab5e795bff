"""The fit request's class_weight, steps_per_epoch, validation_steps and shuffle="batch", and the
compile spec's execution options: bad values are a 422 naming the field; good ones train."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.scenario_checks import wait_for
from tests.support import scenario


def _model(client: TestClient) -> str:
    return str(client.post("/v1/models", json={"config": scenario.MODEL, "seed": 1}).json()["id"])


@pytest.mark.parametrize(
    ("extra", "loc", "text"),
    [
        ({"class_weight": {"a": 1.0}}, ["body", "class_weight", "a"], "class indices"),
        ({"class_weight": {"1.5": 1.0}}, ["body", "class_weight", "1.5"], "class indices"),
        ({"class_weight": {"0": -1.0}}, ["body", "class_weight", "0"], ">= 0"),
        ({"class_weight": {"0": "heavy"}}, ["body", "class_weight", "0"], ""),
        ({"class_weight": [1.0, 2.0]}, ["body", "class_weight"], ""),
        ({"class_weight": {"0": 2.0}, "sample_weight": [1.0] * 500}, ["body", "class_weight"],
         "sample_weight"),
        ({"steps_per_epoch": 0}, ["body", "steps_per_epoch"], ""),
        ({"steps_per_epoch": 2.5}, ["body", "steps_per_epoch"], ""),
        ({"validation_steps": -1}, ["body", "validation_steps"], ""),
        ({"shuffle": "batches"}, ["body", "shuffle"], ""),
        ({"compile": {**scenario.COMPILE, "steps_per_execution": 0}},
         ["body", "compile", "steps_per_execution"], "[1,"),
        ({"compile": {**scenario.COMPILE, "jit_compile": "yes"}},
         ["body", "compile", "jit_compile"], "'auto'"),
        ({"compile": {**scenario.COMPILE, "dtype_policy": "int8"}},
         ["body", "compile", "dtype_policy"], "float32"),
    ],
)  # fmt: skip
def test_bad_fit_arguments_name_the_field(
    client: TestClient, extra: dict[str, Any], loc: list[Any], text: str
) -> None:
    body = scenario.fit_body(epochs=2, callbacks=[], **extra)
    r = client.post(f"/v1/models/{_model(client)}/fit", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"][: len(loc)] == loc
    assert text in detail["msg"]


def test_a_fit_with_the_new_arguments_trains(client: TestClient) -> None:
    body = scenario.fit_body(
        epochs=3, callbacks=[], batch_size=None, class_weight={"0": 0.5, "1": 2.0},
        steps_per_epoch=3, validation_steps=1, shuffle="batch",
        compile={**scenario.COMPILE, "steps_per_execution": 2},
    )  # fmt: skip
    job = client.post(f"/v1/models/{_model(client)}/fit", json=body)
    assert job.status_code in (200, 201, 202), job.text
    done = wait_for(client, job.json()["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    assert len(done["history"]["loss"]) == 3 and len(done["history"]["val_loss"]) == 3
