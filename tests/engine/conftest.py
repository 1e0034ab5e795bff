"""Engine test fixtures: Keras 3 on its torch backend, the reference the engine must match."""

from __future__ import annotations

import os

# Must precede any import of keras: the backend is fixed at import time.
os.environ.setdefault("KERAS_BACKEND", "torch")

from types import ModuleType

import pytest


def import_keras() -> ModuleType:
    """Keras on the torch backend (fails loudly if another backend was already chosen)."""
    import keras

    assert keras.backend.backend() == "torch", "the engine is compared with Keras's torch backend"
    return keras


@pytest.fixture(scope="session")
def keras() -> ModuleType:
    return import_keras()
