"""Security review findings: metric hyperparameters that size memory are bounded, top-k metrics
are checked against the output's width, request bodies do not coerce across JSON types, and
OPTIONS answers with the path's real methods. Each refusal is a 422 naming the field, before any
job row exists."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import serve
from tests.support import scenario


def _model(client: TestClient) -> str:
    return str(client.post("/v1/models", json={"config": scenario.MODEL, "seed": 1}).json()["id"])


def _fit_refused(client: TestClient, body: dict[str, Any], loc: list[Any], text: str) -> None:
    model_id = _model(client)
    start = time.monotonic()
    r = client.post(f"/v1/models/{model_id}/fit", json=body)
    assert time.monotonic() - start < 30
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"][: len(loc)] == loc, detail
    assert text in detail["msg"], detail
    assert client.get("/v1/jobs").json()["items"] == []


def _with_metric(metric: Any) -> dict[str, Any]:
    compile_spec = {**scenario.COMPILE, "metrics": [metric]}
    return scenario.fit_body(epochs=1, callbacks=[], compile=compile_spec)


@pytest.mark.parametrize(
    ("metric", "key"),
    [
        ({"class_name": "AUC", "config": {"num_thresholds": 1_000_000_000}}, "num_thresholds"),
        ({"class_name": "AUC", "config": {"multi_label": True, "num_labels": 10**9}},
         "num_labels"),
        ({"class_name": "AUC", "config": {"thresholds": [0.5] * 5000}}, "thresholds"),
        ({"class_name": "PrecisionAtRecall", "config": {"recall": 0.5,
                                                       "num_thresholds": 10**9}},
         "num_thresholds"),
        ({"class_name": "RecallAtPrecision", "config": {"precision": 0.5,
                                                       "num_thresholds": 10**9}},
         "num_thresholds"),
        ({"class_name": "SensitivityAtSpecificity", "config": {"specificity": 0.5,
                                                              "num_thresholds": 10**9}},
         "num_thresholds"),
        ({"class_name": "SpecificityAtSensitivity", "config": {"sensitivity": 0.5,
                                                              "num_thresholds": 10**9}},
         "num_thresholds"),
        ({"class_name": "MeanIoU", "config": {"num_classes": 10**9}}, "num_classes"),
    ],
)  # fmt: skip
def test_metric_sizes_are_bounded(tmp_path: Path, metric: dict[str, Any], key: str) -> None:
    with serve(tmp_path) as c:
        _fit_refused(c, _with_metric(metric), ["body", "compile", "metrics", 0, "config", key], "")


@pytest.mark.parametrize(
    "metric",
    [
        "top_k_categorical_accuracy",
        {"class_name": "SparseTopKCategoricalAccuracy", "config": {"k": 2}},
        {"class_name": "Precision", "config": {"top_k": 3}},
    ],
)
def test_top_k_wider_than_the_output_is_refused(tmp_path: Path, metric: Any) -> None:
    # Keras 3.15.1 (torch) fails with "selected index k out of range": refused, not run.
    with serve(tmp_path) as c:
        _fit_refused(c, _with_metric(metric), ["body", "compile", "metrics", 0], "k")


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"seed": "1"}, "seed"), ({"shuffle": "yes"}, "shuffle"),
     ({"validation_split": "0.5"}, "validation_split"), ({"epochs": "2"}, "epochs"),
     ({"shuffle": 1}, "shuffle")],
)  # fmt: skip
def test_fit_fields_do_not_coerce(tmp_path: Path, extra: dict[str, Any], field: str) -> None:
    with serve(tmp_path) as c:
        body = {**scenario.fit_body(epochs=1, callbacks=[]), **extra}
        _fit_refused(c, body, ["body", field], "")


def test_model_fields_do_not_coerce(tmp_path: Path) -> None:
    with serve(tmp_path) as c:
        r = c.post("/v1/models", json={"config": scenario.MODEL, "seed": "1"})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"][:2] == ["body", "seed"]
        assert c.get("/v1/models").json()["items"] == []


def test_a_job_id_is_still_a_json_string(tmp_path: Path) -> None:
    with serve(tmp_path) as c:
        model_id = _model(c)
        body = {"x": scenario.X[:4].tolist(), "checkpoint": "latest",
                "job_id": "00000000-0000-0000-0000-000000000000"}  # fmt: skip
        r = c.post(f"/v1/models/{model_id}/predict_on_batch", json=body)
        assert r.status_code == 404, r.text


@pytest.mark.parametrize(
    ("path", "methods"),
    [("/v1/models", {"GET", "POST", "OPTIONS"}),
     ("/v1/jobs", {"GET", "OPTIONS"})],
)  # fmt: skip
def test_options_lists_every_method(tmp_path: Path, path: str, methods: set[str]) -> None:
    with serve(tmp_path) as c:
        r = c.options(path)
        assert r.status_code in (200, 204), r.text
        assert {m.strip() for m in r.headers["allow"].split(",")} == methods
        r = c.delete(path)
        assert r.status_code == 405
        assert {m.strip() for m in r.headers["allow"].split(",")} == methods
