"""The scenario our users bring first, used as the OpenAPI examples of the models routes and of
the jobs routes (fit, resume): a one-feature binary classifier (x = -20.0 ... 29.9, y = x >= 10)."""

from __future__ import annotations

from typing import Any

SEED_MODEL: dict[str, Any] = {
    "class_name": "Sequential",
    "config": {
        "name": "seed",
        "layers": [
            {"class_name": "InputLayer", "config": {"batch_shape": [None, 1], "dtype": "float32"}},
            {"class_name": "Normalization", "config": {"axis": -1}},
            {"class_name": "Dense", "config": {"units": 1, "activation": "relu"}},
            {"class_name": "Dense", "config": {"units": 1, "activation": "sigmoid"}},
        ],
    },
}
SEED_COMPILE: dict[str, Any] = {
    "optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.1}},
    "loss": "binary_crossentropy",
    "metrics": ["accuracy"],
}
_X = [[-20.0], [-10.0], [0.0], [9.9], [10.0], [20.0], [29.9]]
_Y = [0, 0, 0, 0, 1, 1, 1]
SEED_FIT: dict[str, Any] = {
    "compile": SEED_COMPILE,
    "x": _X,
    "y": _Y,
    "validation_data": {"x": _X, "y": _Y},
    "batch_size": 128,
    "epochs": 300,
    "callbacks": [
        {"class_name": "ThresholdStopping", "config": {"monitor": "val_accuracy", "threshold": 1.0}}
    ],
}
SEED_EVALUATE: dict[str, Any] = {"x": _X, "y": _Y, "batch_size": 128}
SEED_PREDICT: dict[str, Any] = {"x": _X}
SEED_ON_BATCH: dict[str, Any] = {"x": _X, "y": _Y}
SEED_ADAPT: dict[str, Any] = {"x": _X}
SEED_RESUME: dict[str, Any] = {"checkpoint": "latest", "epochs": 600}

# -- what the routes answer (the seed model after POST /compile) ---------------------------------
MODEL_ID = "ce05e776-f267-4dae-9eb5-98f7d416fec9"
_SUMMARY_LAYERS = [
    {"name": "normalization", "class_name": "Normalization", "output_shape": [None, 1],
     "params": 3, "trainable_params": 0, "non_trainable_params": 3},
    {"name": "dense", "class_name": "Dense", "output_shape": [None, 1], "params": 2,
     "trainable_params": 2, "non_trainable_params": 0},
    {"name": "dense_1", "class_name": "Dense", "output_shape": [None, 1], "params": 2,
     "trainable_params": 2, "non_trainable_params": 0},
]  # fmt: skip
SEED_SUMMARY: dict[str, Any] = {
    "name": "seed", "kind": "Sequential",
    "inputs": [{"name": "input_layer", "shape": [None, 1], "dtype": "float32"}],
    "outputs": [{"name": "dense_1", "shape": [None, 1], "dtype": "float32"}],
    "input_shape": [None, 1], "output_shape": [None, 1], "layers": _SUMMARY_LAYERS,
    "total_params": 7, "trainable_params": 4, "non_trainable_params": 3,
}  # fmt: skip
MODEL_OUT: dict[str, Any] = {
    "id": MODEL_ID, "name": "seed", "seed": 42, "summary": SEED_SUMMARY, "config": SEED_MODEL,
    "compile": {**SEED_COMPILE, "loss_weights": None, "weighted_metrics": None},
    "weights": "initial", "weights_checkpoint_id": None,
    "created_at": "2026-12-07T14:35:16.375424Z", "updated_at": "2026-12-07T14:35:16.402113Z",
}  # fmt: skip
LOGS: dict[str, Any] = {"accuracy": 0.8571, "loss": 0.2974}
PREDICT_OUT: dict[str, Any] = {"predictions": [[0.0], [0.0], [0.0012], [0.4918], [0.5072], [1.0],
                                               [1.0]]}  # fmt: skip
