"""Layer comparison cases against Keras, one module per layer family. Each module defines
`CASES: dict[str, tuple[list[tuple[class_name, config]], batch_input_shape]]`; every registered
layer must appear in some case (tests/engine/test_models.py checks it)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

Case = tuple[list[tuple[str, dict[str, Any]]], list[Any]]


def all_cases() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for module in pkgutil.iter_modules(__path__):
        mod = importlib.import_module(f"{__name__}.{module.name}")
        for name, case in mod.CASES.items():
            key = f"{module.name}:{name}"
            assert key not in cases
            cases[key] = case
    return cases
