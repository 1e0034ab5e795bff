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
