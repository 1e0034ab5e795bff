"""A fit job's input arrays (training and validation x, y and sample weights) in the artifact
store: written once, before the job's row is committed, and read by every attempt."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from safetensors.numpy import load as np_load
from safetensors.numpy import save as np_save

from app.runtime.storage import ArtifactStore


def write_inputs(store: ArtifactStore, key: str, arrays: Mapping[str, np.ndarray | None]) -> None:
    present = {k: np.ascontiguousarray(v) for k, v in arrays.items() if v is not None}
    store.write(key, np_save(present))


def read_inputs(store: ArtifactStore, key: str) -> dict[str, np.ndarray]:
    return dict(np_load(store.read(key)))
