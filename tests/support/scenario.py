"""The scenario our users bring first, as data (shared by tests and benchmarks)."""

from __future__ import annotations

from typing import Any

import numpy as np

X = np.round(np.arange(-20.0, 30.0, 0.1), 1).astype(np.float32).reshape(-1, 1)
Y = (X[:, 0] >= 10.0).astype(np.float32)
assert X.shape == (500, 1)

MODEL: dict[str, Any] = {
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
COMPILE: dict[str, Any] = {
    "optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.1}},
    "loss": "binary_crossentropy",
    "metrics": ["accuracy"],
}
CALLBACKS: list[dict[str, Any]] = [
    {"class_name": "ThresholdStopping", "config": {"monitor": "val_accuracy", "threshold": 1.0}}
]


def fit_body(epochs: int = 300, **extra: Any) -> dict[str, Any]:
    x, y = X.tolist(), Y.tolist()
    return {
        "compile": COMPILE,
        "x": x,
        "y": y,
        "validation_data": {"x": x, "y": y},
        "batch_size": 128,
        "epochs": epochs,
        "callbacks": CALLBACKS,
        **extra,
    }
