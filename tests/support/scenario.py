"""The scenario our users bring first, as data (shared by tests and benchmarks)."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.models.examples import SEED_COMPILE, SEED_MODEL

X = np.round(np.arange(-20.0, 30.0, 0.1), 1).astype(np.float32).reshape(-1, 1)
Y = (X[:, 0] >= 10.0).astype(np.float32)
assert X.shape == (500, 1)

# The same model and compile spec the OpenAPI examples show.
MODEL: dict[str, Any] = SEED_MODEL
COMPILE: dict[str, Any] = SEED_COMPILE
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
