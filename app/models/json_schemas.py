"""The typed JSON Schemas of the Keras objects that request and response bodies carry, for the
OpenAPI document: a compile spec's optimizer, losses, metrics and options; fit's callbacks; a
model's Keras JSON config; and references to a dataset's array. Names come from the engine's
registries (optimizers with their hyperparameters, losses, metrics, schedules, callbacks), so
the document lists exactly what the engine accepts.

They describe; they do not validate. The fields keep their runtime types (`Any`, `dict`), and the
engine's own checks still produce every 422 and its `loc`: a schema here only tells clients (and
client generators) the shape. `components()` is what app.api.openapi adds to the document's
components; the request and response models point at them with `ref(name)`."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import WithJsonSchema

from app.datasets.schemas import REF_EXAMPLE
from app.engine import optimizers
from app.engine.callbacks.monitor import MODES
from app.engine.losses import LOSSES
from app.engine.metrics import METRICS
from app.engine.optimizers import OPTIMIZERS
from app.engine.optimizers.schedules import SCHEDULES
from app.engine.training.compile import DTYPE_POLICIES, MAX_STEPS_PER_EXECUTION

Schema = dict[str, Any]
NULL: Schema = {"type": "null"}
NUMBER: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
STRING: Schema = {"type": "string"}
OPEN: Schema = {"type": "object", "additionalProperties": True}
KERAS_MODULE: Schema = {
    "module": {"anyOf": [STRING, NULL], "description": "`keras` or a `keras.` module, if any"},
    "registered_name": {"anyOf": [STRING, NULL]},
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def described(name: str, *, nullable: bool = False) -> WithJsonSchema:
    """A field's schema: the component `name` (or null). Wrapped, as pydantic would look up a
    bare `$ref` among its own definitions."""
    return WithJsonSchema({"anyOf": [ref(name), NULL]} if nullable else {"allOf": [ref(name)]})


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, NULL]}


def _object(properties: dict[str, Schema], required: tuple[str, ...] = (), **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return {**schema, **extra}


def _identified(names: list[str], config: Schema, description: str) -> Schema:
    """A name, or `{class_name, config}` with a class_name among `names`."""
    name: Schema = {"type": "string", "enum": names}
    spec = _object({"class_name": name, "config": config, **KERAS_MODULE}, ("class_name",))
    return {"anyOf": [name, spec], "description": description}


# -- optimizers ----------------------------------------------------------------------------------
def _value_schema(default: Any) -> Schema:
    if isinstance(default, bool):
        return {"type": "boolean", "default": default}
    if isinstance(default, int | float):
        return {"type": "number", "default": default}
    return {}


def _optimizer_config(hyperparameters: dict[str, Any]) -> Schema:
    common: dict[str, Schema] = {
        "name": STRING,
        "learning_rate": {"anyOf": [NUMBER, ref("LearningRateSchedule")],
                          "description": "A number, or a schedule evaluated per step"},
        "weight_decay": _nullable(NUMBER),
        "clipnorm": _nullable(NUMBER), "clipvalue": _nullable(NUMBER),
        "global_clipnorm": _nullable(NUMBER),
        "use_ema": BOOL, "ema_momentum": NUMBER,
        "ema_overwrite_frequency": _nullable({"type": "integer"}),
        "loss_scale_factor": _nullable(NUMBER),
        "gradient_accumulation_steps": _nullable({"type": "integer"}),
    }  # fmt: skip
    own = {key: _value_schema(default) for key, default in hyperparameters.items()}
    return _object({**common, **own})


def _optimizer() -> Schema:
    names = []
    variants = []
    for cls in sorted(OPTIMIZERS.classes(), key=OPTIMIZERS.canonical_name):
        canonical = OPTIMIZERS.canonical_name(cls)
        spellings = sorted({canonical, canonical.lower()})
        if cls not in optimizers._NO_STRING_ID:
            names.extend(spellings)
        variants.append(_object({
            "class_name": {"type": "string", "enum": spellings},
            "config": _optimizer_config(cls.hyperparameters()),
            **KERAS_MODULE,
        }, ("class_name",), title=canonical))  # fmt: skip
    name: Schema = {"type": "string", "enum": sorted(names), "description": "Any case"}
    spec = {"class_name": "Adam", "config": {"learning_rate": 0.001}}
    return {"anyOf": [name, *variants], "examples": ["adam", spec],
            "description": "A name or {class_name, config}; rmsprop by default"}  # fmt: skip


def _schedule() -> Schema:
    kinds = {"staircase": BOOL, "cycle": BOOL, "name": STRING,
             "boundaries": {"type": "array", "items": NUMBER},
             "values": {"type": "array", "items": NUMBER}}  # fmt: skip
    variants = [
        _object({
            "class_name": {"type": "string", "const": SCHEDULES.canonical_name(cls)},
            "config": _object({key: kinds.get(key, NUMBER) for key in cls.declared_keys}),
            **KERAS_MODULE,
        }, ("class_name", "config"), title=SCHEDULES.canonical_name(cls))
        for cls in sorted(SCHEDULES.classes(), key=SCHEDULES.canonical_name)
    ]  # fmt: skip
    return {"oneOf": variants, "description": "A learning-rate schedule, as Keras serializes it"}


# -- losses, metrics, compile -------------------------------------------------------------------
def _loss_and_metric() -> dict[str, Schema]:
    loss = _identified(sorted({*LOSSES.all_names(), "crossentropy", "ce"}), OPEN,
                       "A loss: a name or alias, or {class_name, config}")  # fmt: skip
    metric = _identified(sorted({*METRICS.all_names(), "accuracy", "acc"}), OPEN,
                         "A metric: a name or alias, or {class_name, config}")  # fmt: skip
    some_metrics: Schema = {"type": "array", "items": ref("Metric")}
    per_output = {"anyOf": [ref("Metric"), some_metrics, NULL]}
    return {
        "Loss": loss,
        "Metric": metric,
        "Losses": {"anyOf": [ref("Loss"), {"type": "array", "items": _nullable(ref("Loss"))},
                             {"type": "object", "additionalProperties": _nullable(ref("Loss"))},
                             NULL],
                   "description": "One loss for every output, a list in output order or an "
                   "object keyed by output name (null: no loss for that output)"},
        "LossWeights": {"anyOf": [NUMBER, {"type": "array", "items": _nullable(NUMBER)},
                                  {"type": "object", "additionalProperties": _nullable(NUMBER)},
                                  NULL]},
        "Metrics": {"anyOf": [ref("Metric"), {"type": "array", "items": per_output},
                              {"type": "object", "additionalProperties": per_output}, NULL],
                    "description": "A list of metrics; with several outputs one entry per "
                    "output (a list in output order or an object keyed by output name)"},
    }  # fmt: skip


def compile_field(name: str) -> Schema:
    """The schema of one field of a compile spec (CompileRequest's properties); no bare `$ref`
    (see `described`)."""
    return {
        "optimizer": _nullable(ref("Optimizer")),
        "loss": {"allOf": [ref("Losses")]},
        "loss_weights": {"allOf": [ref("LossWeights")]},
        "metrics": {"allOf": [ref("Metrics")]},
        "weighted_metrics": {"allOf": [ref("Metrics")]},
        "steps_per_execution": _nullable(
            {"type": "integer", "minimum": 1, "maximum": MAX_STEPS_PER_EXECUTION, "default": 1}
        ),
        "jit_compile": {"anyOf": [BOOL, {"type": "string", "const": "auto"}, NULL]},
        "run_eagerly": _nullable(BOOL),
        "auto_scale_loss": _nullable(BOOL),
        "dtype_policy": _nullable({"type": "string", "enum": list(DTYPE_POLICIES)}),
    }[name]


# -- callbacks -----------------------------------------------------------------------------------
def _callbacks() -> dict[str, Schema]:
    mode: Schema = {"type": "string", "enum": list(MODES), "default": "auto"}
    monitor: Schema = {"type": "string", "default": "val_loss"}
    count: Schema = {"type": "integer", "minimum": 0}
    configs: dict[str, Schema] = {
        "EarlyStopping": _object({
            "monitor": monitor, "min_delta": NUMBER, "patience": count, "verbose": count,
            "mode": mode, "baseline": _nullable(NUMBER), "restore_best_weights": BOOL,
            "start_from_epoch": count}),
        "ThresholdStopping": _object({"monitor": STRING, "threshold": NUMBER, "mode": mode},
                                     ("monitor", "threshold")),
        "ReduceLROnPlateau": _object({
            "monitor": monitor, "factor": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
            "patience": count, "verbose": count, "mode": mode, "min_delta": NUMBER,
            "cooldown": count, "min_lr": {"type": "number", "minimum": 0}}),
        "ModelCheckpoint": _object({
            "filepath": _nullable(STRING), "monitor": monitor, "verbose": count,
            "save_best_only": BOOL, "save_weights_only": BOOL, "mode": mode,
            "save_freq": {"anyOf": [{"type": "string", "const": "epoch"},
                                    {"type": "integer", "minimum": 1}]},
            "initial_value_threshold": _nullable(NUMBER)}),
        "TerminateOnNaN": _object({"raise_error": BOOL}),
        "LearningRateScheduler": _object({"schedule": ref("LearningRateSchedule"),
                                          "verbose": count}, ("schedule",)),
    }  # fmt: skip
    out: dict[str, Schema] = {}
    for name, config in configs.items():
        out[f"{name}Callback"] = _object(
            {"class_name": {"type": "string", "const": name}, "config": config, **KERAS_MODULE},
            ("class_name",), title=name,
        )  # fmt: skip
    out["Callback"] = {
        "oneOf": [ref(f"{name}Callback") for name in configs],
        "discriminator": {"propertyName": "class_name",
                          "mapping": {name: ref(f"{name}Callback")["$ref"] for name in configs}},
        "description": "A callback as Keras serializes it: {class_name, config}",
    }  # fmt: skip
    return out


# -- model config, data --------------------------------------------------------------------------
def _model() -> dict[str, Schema]:
    layer: Schema = {
        "type": "object", "required": ["class_name"],
        "properties": {
            "class_name": {"type": "string", "examples": ["Dense", "Conv2D", "Functional"]},
            "config": {"type": "object", "description": "The layer's Keras config"},
            "name": STRING,
            "inbound_nodes": {"type": "array", "description": "Functional models: the calls "
                              "that feed this layer, as Keras 3 writes them"},
            **KERAS_MODULE,
        },
        "additionalProperties": True,
    }  # fmt: skip
    endpoints: Schema = {"description": "Functional: [layer, node, tensor], a list of them, or "
                         "an object keyed by name"}  # fmt: skip
    config: Schema = {
        "type": "object", "required": ["layers"],
        "properties": {
            "name": STRING, "trainable": BOOL, "layers": {"type": "array", "items": ref("Layer")},
            "input_layers": endpoints, "output_layers": endpoints,
        },
        "additionalProperties": True,
    }  # fmt: skip
    model: Schema = {
        "type": "object", "required": ["class_name", "config"],
        "properties": {
            "class_name": {"type": "string", "enum": ["Sequential", "Functional", "Model"]},
            "config": config, **KERAS_MODULE,
            "build_config": {"type": "object"}, "compile_config": {"type": "object"},
        },
        "additionalProperties": True,
        "description": "A Keras model JSON, as `model.to_json()` writes it",
    }  # fmt: skip
    return {"Layer": layer, "ModelConfig": model}


def _data() -> dict[str, Schema]:
    ref_schema = _object({
        "dataset": {"type": "string", "format": "uuid"},
        "array": {"type": "string", "description": "The array's name; by default the dataset's "
                  "one array, else `x`"},
        "rows": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2,
                 "maxItems": 2, "description": "[start, stop): 0-based, stop excluded"},
    }, ("dataset",), examples=[REF_EXAMPLE],
        description="A reference to an uploaded dataset's array")  # fmt: skip
    array: Schema = {"type": "array", "description": "Nested lists, batch dimension first"}
    one = {"anyOf": [array, ref("DatasetRef")]}
    arrays: Schema = {
        "anyOf": [array, ref("DatasetRef"), {"type": "object", "additionalProperties": one}],
        "description": "An array (nested lists) or a dataset reference; for several inputs or "
        "outputs, an object keyed by name or a list in order",
    }  # fmt: skip
    return {"DatasetRef": ref_schema, "Arrays": arrays}


@lru_cache(maxsize=1)
def components() -> dict[str, Schema]:
    """Every schema these refer to, by component name."""
    return {
        "Optimizer": _optimizer(), "LearningRateSchedule": _schedule(), **_loss_and_metric(),
        **_callbacks(), **_model(), **_data(),
    }  # fmt: skip
