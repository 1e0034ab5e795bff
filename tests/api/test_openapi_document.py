"""The OpenAPI document as client generators read it: every operation has a stable
operationId (its endpoint function's name), every request body and every response of every
status code and media type has an example, and the compile, callbacks, model config and dataset
reference fields are typed schemas, not free-form objects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def app_and_spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict]]:
    tmp: Path = tmp_path_factory.mktemp("openapi")
    app = create_app(Settings(data_dir=tmp, database_url=None, redis_url=None))
    with TestClient(app) as client:
        yield app, client.get("/openapi.json").json()


@pytest.fixture(scope="module")
def spec(app_and_spec: tuple[Any, dict]) -> dict:
    return app_and_spec[1]


def operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield method.upper(), path, op


def resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def has_example(spec: dict, media: dict) -> bool:
    """An example on the media type object, or on its schema (followed through $ref, and through
    anyOf/oneOf when every member but null has one)."""
    if "example" in media or "examples" in media:
        return True
    schema = resolve(spec, media.get("schema", {}))
    if "example" in schema or "examples" in schema:
        return True
    members = [m for m in schema.get("anyOf", schema.get("oneOf", [])) if m.get("type") != "null"]
    return bool(members) and all(has_example(spec, {"schema": m}) for m in members)


def test_every_operation_id_is_its_endpoint_function_name(app_and_spec: tuple[Any, dict]) -> None:
    app, spec = app_and_spec
    ids = [op.get("operationId") for _, _, op in operations(spec)]
    assert len(ids) >= 40
    assert all(isinstance(i, str) and SNAKE.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)
    healthz = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == "/healthz")
    assert healthz.endpoint.__name__ == "healthz" and "healthz" in ids
    by_route = {(m, p): op["operationId"] for m, p, op in operations(spec)}
    assert by_route["POST", "/v1/models"] == "create_model"
    assert by_route["POST", "/v1/models/{model_id}/fit"] == "fit_model"
    assert by_route["GET", "/v1/jobs/{job_id}/events"] == "stream_job_events"


def test_every_request_body_and_response_has_an_example(spec: dict) -> None:
    missing = []
    for method, path, op in operations(spec):
        content = op.get("requestBody", {}).get("content", {})
        assert not op.get("requestBody") or content, (method, path)
        for media_type, media in content.items():
            if not has_example(spec, media):
                missing.append(f"{method} {path} request {media_type}")
        for status, response in op["responses"].items():
            for media_type, media in response.get("content", {}).items():
                if not has_example(spec, media):
                    missing.append(f"{method} {path} {status} {media_type}")
    assert not missing, "\n".join(missing)


def test_error_examples_say_what_the_status_means(spec: dict) -> None:
    op = spec["paths"]["/v1/models/{model_id}/compile"]["post"]["responses"]
    for status, kind in (("404", "not_found"), ("409", "conflict"), ("413", "payload_too_large"),
                         ("422", "greater_than_equal")):  # fmt: skip
        example = op[status]["content"]["application/json"]["example"]
        assert example["detail"][0]["type"] == kind, (status, example)
    weights = spec["paths"]["/v1/models/{model_id}/weights"]["get"]["responses"]["200"]
    assert weights["content"]["application/octet-stream"]["schema"]["format"] == "binary"
    upload = spec["paths"]["/v1/datasets"]["post"]["requestBody"]["content"]
    assert upload["text/csv"]["example"].startswith("x0,x1,label\n")
    assert upload["application/x-npz"]["example"] == "an .npz file (numpy.savez)"


# -- typed schemas -------------------------------------------------------------------------------
def members(spec: dict, schema: dict) -> list[dict]:
    """The schemas a value may match: through $ref, allOf of one and anyOf/oneOf (null left out)."""
    schema = resolve(spec, schema)
    if len(schema.get("allOf", [])) == 1:
        return members(spec, schema["allOf"][0])
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        found = [m for a in alternatives for m in members(spec, a)]
        return [m for m in found if m.get("type") != "null"]
    return [schema]


def free_form(schema: dict) -> bool:
    """An object of any keys and values, or no schema at all."""
    typed = {"properties", "enum", "const", "items", "type"}
    values = schema.get("additionalProperties", True)
    is_open_object = (schema.get("type", "object") == "object" and not schema.get("properties")
                      and values in (True, {}))  # fmt: skip
    return is_open_object or not (typed & schema.keys())


@pytest.mark.parametrize(("component", "field"), [
    ("CompileRequest", "optimizer"), ("CompileRequest", "loss"), ("CompileRequest", "metrics"),
    ("CompileRequest", "loss_weights"), ("CompileRequest", "weighted_metrics"),
    ("CompileRequest", "jit_compile"), ("CompileRequest", "steps_per_execution"),
    ("CompileRequest", "dtype_policy"), ("FitRequest", "compile"), ("FitRequest", "callbacks"),
    ("FitRequest", "x"), ("FitRequest", "y"), ("FitRequest", "sample_weight"),
    ("EvaluateRequest", "compile"), ("TrainOnBatchRequest", "compile"),
    ("PredictRequest", "x"), ("ModelCreate", "config"), ("ModelOut", "config"),
    ("ModelOut", "compile"), ("ValidationData", "x"),
])  # fmt: skip
def test_keras_objects_have_typed_schemas(spec: dict, component: str, field: str) -> None:
    schema = spec["components"]["schemas"][component]["properties"][field]
    alternatives = members(spec, schema)
    assert alternatives and not any(free_form(m) for m in alternatives), (field, alternatives)


def test_the_typed_schemas_follow_the_engine_registries(spec: dict) -> None:
    from app.engine.callbacks import CALLBACKS
    from app.engine.losses import LOSSES
    from app.engine.metrics import METRICS
    from app.engine.optimizers import OPTIMIZERS

    schemas = spec["components"]["schemas"]
    callback = schemas["Callback"]
    assert set(callback["discriminator"]["mapping"]) == set(CALLBACKS.names())
    for name, target in callback["discriminator"]["mapping"].items():
        variant = resolve(spec, {"$ref": target})
        assert variant["properties"]["class_name"]["const"] == name
        assert variant["properties"]["config"]["properties"], name
    optimizer_names = {n.lower() for n in schemas["Optimizer"]["anyOf"][0]["enum"]}
    assert optimizer_names == set(OPTIMIZERS.all_names()) - {"lamb"}  # Lamb: only by class_name
    assert {"adam", "Adam", "SGD", "sgd"} <= set(schemas["Optimizer"]["anyOf"][0]["enum"])
    adam = next(v for v in schemas["Optimizer"]["anyOf"][1:] if v["title"] == "Adam")
    assert {"beta_1", "learning_rate", "clipnorm"} <= set(
        adam["properties"]["config"]["properties"]
    )
    assert set(LOSSES.all_names()) <= set(schemas["Loss"]["anyOf"][0]["enum"])
    assert set(METRICS.all_names()) <= set(schemas["Metric"]["anyOf"][0]["enum"])
    ref = schemas["DatasetRef"]
    assert ref["required"] == ["dataset"] and set(ref["properties"]) == {"dataset", "array", "rows"}
    model = schemas["ModelConfig"]
    assert model["properties"]["class_name"]["enum"] == ["Sequential", "Functional", "Model"]
    assert model["properties"]["config"]["properties"]["layers"]["items"] == {
        "$ref": "#/components/schemas/Layer"
    }


def test_the_typed_schemas_are_valid_and_accept_the_examples(spec: dict) -> None:
    """Every component is a valid JSON Schema (2020-12, as OpenAPI 3.1 uses), every $ref
    resolves, and the documented examples (and a fit using every kind of object) conform."""
    # Schemathesis's own validator.
    import jsonschema_rs

    from app.models import examples

    for name, schema in spec["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name

    def check(instance: object, component: str) -> None:
        root = {"$ref": f"#/components/schemas/{component}", "components": spec["components"]}
        jsonschema_rs.Draft202012Validator(root).validate(instance)

    check(examples.SEED_FIT, "FitRequest")
    check(examples.SEED_COMPILE, "CompileRequest")
    check({"config": examples.SEED_MODEL, "seed": 1}, "ModelCreate")
    check(examples.MODEL_OUT, "ModelOut")
    check({
        "compile": {"optimizer": {"class_name": "SGD", "config": {"learning_rate": {
            "class_name": "ExponentialDecay", "config": {"initial_learning_rate": 0.1,
                                                         "decay_steps": 10, "decay_rate": 0.9}},
            "momentum": 0.9}}, "loss": {"out": "mse", "aux": None},
            "loss_weights": {"out": 1.0}, "metrics": {"out": ["mae", {"class_name": "AUC"}]},
            "jit_compile": "auto"},
        "x": {"dataset": "3f2b9c1e-0000-4000-8000-000000000000", "array": "x", "rows": [0, 10]},
        "y": {"out": [[1.0]], "aux": {"dataset": "3f2b9c1e-0000-4000-8000-000000000000"}},
        "callbacks": [
            {"class_name": "EarlyStopping", "config": {"patience": 3, "mode": "min"}},
            {"class_name": "ModelCheckpoint", "config": {"save_freq": 5}},
            {"class_name": "LearningRateScheduler", "config": {"schedule": {
                "class_name": "CosineDecay", "config": {"initial_learning_rate": 0.1,
                                                        "decay_steps": 100}}}},
        ],
    }, "FitRequest")  # fmt: skip
    for bad in ({"callbacks": [{"class_name": "Nope"}]}, {"compile": {"optimizer": "nope"}},
                {"compile": {"lr": 1}}):  # fmt: skip
        with pytest.raises(jsonschema_rs.ValidationError):
            check({"x": [[0.0]], "y": [0], **bad}, "FitRequest")
