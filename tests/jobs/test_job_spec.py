"""A fit job's typed, versioned spec: a row's `request` stored before the spec existed
(tests/fixtures/job_request_fit.json, written by the earlier code) reads as the same values
and writes back as the same JSON plus its version; a newer version is refused; and the fit
request declares every engine fit argument, generated from FitArgs (name, default, bounds,
description), which the service takes over by name. Predict and evaluate jobs' specs likewise
read the rows stored before them (tests/fixtures/job_request_{predict,evaluate}.json)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.engine.training.fit_args import MAX_EPOCHS, FitArgs
from app.jobs.schemas import FIT_ARG_NAMES, FitRequest
from app.jobs.spec import (
    INFERENCE_SPEC_VERSION,
    SPEC_VERSION,
    EvaluateJobSpec,
    FitJobSpec,
    PredictJobSpec,
    UnknownSpecVersion,
)

FIXTURE = Path(__file__).parent.parent / "fixtures" / "job_request_fit.json"


def _stored() -> dict[str, object]:
    return dict(json.loads(FIXTURE.read_text()))


def test_a_stored_request_reads_as_a_spec_and_writes_back_the_same() -> None:
    stored = _stored()
    spec = FitJobSpec.from_request(stored)
    assert spec.fit == FitArgs(batch_size=10, epochs=5, shuffle=True, seed=3, steps_per_epoch=3)
    assert spec.adapt is False and spec.continue_optimizer is False and spec.data_refs == {}
    assert [c["class_name"] for c in spec.callbacks] == ["EarlyStopping", "ReduceLROnPlateau"]
    assert spec.compile["optimizer"]["class_name"] == "Adam"
    assert spec.to_request() == {**stored, "version": SPEC_VERSION}
    assert FitJobSpec.from_request(json.loads(json.dumps(spec.to_request()))) == spec


def test_a_resumed_spec_changes_the_epochs_only() -> None:
    spec = FitJobSpec.from_request(_stored())
    child = spec.resumed(epochs=9, initial_epoch=4)
    assert child.fit == dataclasses.replace(spec.fit, epochs=9, initial_epoch=4)
    assert dataclasses.replace(child, fit=spec.fit) == spec
    assert spec.fit.epochs == 5  # the parent's is untouched


def test_a_newer_spec_is_refused() -> None:
    with pytest.raises(UnknownSpecVersion, match="version 2"):
        FitJobSpec.from_request({**_stored(), "version": 2})


def test_the_fit_request_declares_every_fit_argument() -> None:
    assert set(FIT_ARG_NAMES) <= set(FitRequest.model_fields)
    body = FitRequest.model_validate(
        {
            "x": [[0.0]],
            "y": [[1.0]],
            "epochs": 3,
            "batch_size": 4,
            "shuffle": "batch",
            "seed": 7,
            "validation_freq": [1, 3],
            "class_weight": {"0": 2.0},
            "steps_per_epoch": 2,
        }
    )
    assert body.fit_args() == FitArgs(
        batch_size=4,
        epochs=3,
        shuffle="batch",
        validation_freq=[1, 3],
        seed=7,
        class_weight={"0": 2.0},
        steps_per_epoch=2,
    )
    assert FitRequest.model_validate({"x": [[0.0]], "y": [[1.0]]}).fit_args() == FitArgs()


def test_the_fit_request_takes_each_fit_argument_from_the_engine() -> None:
    """Name, default, bounds and description are FitArgs's, declared once."""
    fields = FitRequest.model_fields
    names = list(fields)
    assert names[names.index("validation_split") :][: len(FIT_ARG_NAMES)] == list(FIT_ARG_NAMES)
    for f in dataclasses.fields(FitArgs):
        assert fields[f.name].default == f.default, f.name
        assert fields[f.name].description == f.metadata.get("doc"), f.name
    for bad in ({"epochs": MAX_EPOCHS + 1}, {"batch_size": 0}, {"validation_split": 1.0}):
        with pytest.raises(ValidationError) as caught:
            FitRequest.model_validate({"x": [[0.0]], "y": [[1.0]], **bad})
        assert [e["loc"] for e in caught.value.errors()] == [tuple(bad)]


def _stored_inference(kind: str) -> dict[str, object]:
    return dict(json.loads((FIXTURE.parent / f"job_request_{kind}.json").read_text()))


def test_a_stored_predict_request_reads_as_a_spec_and_writes_back_the_same() -> None:
    stored = _stored_inference("predict")
    spec = PredictJobSpec.from_request(stored)
    assert spec == PredictJobSpec(inputs=1, outputs=1, batch_size=16, dtype_policy="float32")
    assert spec.to_request() == {**stored, "version": INFERENCE_SPEC_VERSION}
    assert PredictJobSpec.from_request(json.loads(json.dumps(spec.to_request()))) == spec


def test_a_stored_evaluate_request_reads_as_a_spec_and_writes_back_the_same() -> None:
    stored = _stored_inference("evaluate")
    spec = EvaluateJobSpec.from_request(stored)
    assert (spec.inputs, spec.outputs, spec.batch_size) == (1, 1, None)
    assert spec.compile["loss"] == "binary_crossentropy"
    assert sorted(spec.data_refs) == ["x.0", "y.0"]
    assert spec.data_refs["y.0"]["array"] == "y" and spec.data_refs["y.0"]["rows"] == [0, 240]
    assert spec.to_request() == {**stored, "version": INFERENCE_SPEC_VERSION}
    assert EvaluateJobSpec.from_request(json.loads(json.dumps(spec.to_request()))) == spec


def test_the_oldest_inference_rows_read_with_their_defaults() -> None:
    """Rows from before dataset references and dtype policies were stored."""
    spec = PredictJobSpec.from_request({"batch_size": None, "inputs": 2, "outputs": 1})
    assert spec == PredictJobSpec(inputs=2, outputs=1, dtype_policy="float32", data_refs={})


@pytest.mark.parametrize("kind", ["predict", "evaluate"])
def test_a_newer_inference_spec_is_refused(kind: str) -> None:
    cls = PredictJobSpec if kind == "predict" else EvaluateJobSpec
    with pytest.raises(UnknownSpecVersion, match=f"a {kind} job spec of version 2"):
        cls.from_request({**_stored_inference(kind), "version": 2})
