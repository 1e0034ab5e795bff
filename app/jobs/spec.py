"""What a job stores about itself, typed and versioned: `FitJobSpec`, and `PredictJobSpec` and
`EvaluateJobSpec` for batch inference. The route builds it, the job row keeps its JSON form
(`to_request`) in its `request` column, the resume route derives a child fit's from its
parent's, and the worker reads it back (`from_request`).

The JSON layout is version 1: `compile` (the canonical compile config), `fit` (Keras's fit
arguments as the service resolved them, with `adapt`), `callbacks`, `continue_optimizer` and
`data_refs`. Rows written before the version was recorded have that layout and no `version`
entry; they read as version 1. A row of a newer version is refused rather than misread.

The predict and evaluate layout is version 1 too: `inputs` and `outputs` (how many of the stored
arrays are x and y), `batch_size` (null: Keras's 32) and `data_refs`, with `dtype_policy`
(predict) or `compile` (evaluate). Rows written before the version was recorded have that
layout and no `version`; the oldest have no `data_refs` or `dtype_policy` either (none, and
float32, as the runner then read them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from app.engine.training.fit_args import FitArgs

SPEC_VERSION = 1
INFERENCE_SPEC_VERSION = 1


class UnknownSpecVersion(ValueError):
    """A job row written by a newer version of the service."""


@dataclass
class FitJobSpec:
    """A fit job's inputs besides its data: the compile config, the fit arguments (the batch
    size resolved, the validation split and class weights already applied to the stored
    arrays), whether to adapt Normalization layers first, the callbacks' configs, whether the
    fit continues the model's optimizer, and the dataset references it reads."""

    compile: dict[str, Any]
    fit: FitArgs
    adapt: bool = False
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    continue_optimizer: bool = False
    data_refs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_request(self) -> dict[str, Any]:
        """The JSON the job row stores."""
        return {
            "version": SPEC_VERSION,
            "compile": self.compile,
            "fit": {**dataclasses.asdict(self.fit), "adapt": self.adapt},
            "callbacks": self.callbacks,
            "continue_optimizer": self.continue_optimizer,
            "data_refs": self.data_refs,
        }

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> FitJobSpec:
        """Read a job row's `request`, of this version or an earlier one."""
        _check_version(request, "a fit job spec", SPEC_VERSION)
        fit = dict(request["fit"])
        adapt = bool(fit.pop("adapt", False))  # a step before Keras's fit, not an argument
        return cls(
            compile=dict(request["compile"]),
            fit=FitArgs(**fit),
            adapt=adapt,
            callbacks=list(request.get("callbacks", [])),
            continue_optimizer=bool(request.get("continue_optimizer", False)),
            data_refs=dict(request.get("data_refs") or {}),
        )

    def resumed(self, *, epochs: int, initial_epoch: int) -> FitJobSpec:
        """The spec of a job that resumes this one's fit at `initial_epoch`, up to `epochs`."""
        fit = dataclasses.replace(self.fit, epochs=epochs, initial_epoch=initial_epoch)
        return dataclasses.replace(self, fit=fit)


@dataclass(kw_only=True)
class InferenceJobSpec:
    """A predict or evaluate job's inputs besides its data: how many of its stored arrays are the
    model's inputs and outputs, the batch size (None: Keras's 32) and the dataset references it
    reads."""

    kind: ClassVar[str] = "predict or evaluate"
    inputs: int
    outputs: int
    batch_size: int | None = None
    data_refs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_request(self) -> dict[str, Any]:
        """The JSON the job row stores."""
        return {"version": INFERENCE_SPEC_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> Self:
        """Read a job row's `request`, of this version or an earlier one."""
        _check_version(request, f"a {cls.kind} job spec", INFERENCE_SPEC_VERSION)
        values = {key: value for key, value in request.items() if key != "version"}
        return cls(**{**values, "data_refs": dict(values.get("data_refs") or {})})


@dataclass(kw_only=True)
class PredictJobSpec(InferenceJobSpec):
    """A predict job's: also the model's dtype policy, which its predictions run under."""

    kind: ClassVar[str] = "predict"
    dtype_policy: str = "float32"


@dataclass(kw_only=True)
class EvaluateJobSpec(InferenceJobSpec):
    """An evaluate job's: also the canonical compile config its loss and metrics come from."""

    kind: ClassVar[str] = "evaluate"
    compile: dict[str, Any]


def _check_version(request: Mapping[str, Any], what: str, version: int) -> None:
    stored = request.get("version", 1)
    if stored != version:
        raise UnknownSpecVersion(f"{what} of version {stored!r}; this version reads {version}")
