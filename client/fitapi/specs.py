"""Arguments as the service's JSON: Keras objects (optimizers, losses, metrics, schedules)
become `{class_name, config}` as Keras serializes them, less the `module` and
`registered_name` fields; numpy scalars become numbers. Keras is imported only when a Keras
object is met."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

DROPPED = ("module", "registered_name", "build_config", "compile_config", "shared_object_id")


def is_keras_object(value: Any) -> bool:
    module = type(value).__module__ or ""
    return (module == "keras" or module.startswith("keras.")) and "keras" in sys.modules


def keras_spec(value: Any) -> Any:
    """A Keras object as `{class_name, config}`."""
    import keras

    return strip(keras.saving.serialize_keras_object(value))


def strip(value: Any) -> Any:
    """Keras's serialized form without the fields naming Python modules (the service looks
    class names up in its own registries)."""
    if isinstance(value, dict):
        keys = set(value)
        drop = DROPPED if "class_name" in keys else ()
        return {k: strip(v) for k, v in value.items() if k not in drop}
    if isinstance(value, (list, tuple)):
        return [strip(v) for v in value]
    return value


def plain(value: Any) -> Any:
    """`value` as JSON-ready data."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "to_spec"):
        return value.to_spec()
    if is_keras_object(value):
        return plain(keras_spec(value))
    return value


COMPILE_DEFAULTS: dict[str, Any] = {
    "loss_weights": None, "weighted_metrics": None, "run_eagerly": False,
    "steps_per_execution": 1, "jit_compile": "auto", "auto_scale_loss": True,
}  # fmt: skip


def compile_spec(optimizer: Any, loss: Any, metrics: Any, **options: Any) -> dict[str, Any]:
    """The body of POST /v1/models/{id}/compile: Keras's compile arguments, the defaults left
    out."""
    spec: dict[str, Any] = {"optimizer": plain(optimizer)}
    if loss is not None:
        spec["loss"] = plain(loss)
    if metrics is not None:
        spec["metrics"] = plain(metrics)
    for key, value in options.items():
        if key in COMPILE_DEFAULTS and value == COMPILE_DEFAULTS[key]:
            continue
        if value is not None:
            spec[key] = plain(value)
    return spec
