"""A fit job's input arrays (training and validation x, y and sample weights) in the artifact
store: written once, before the job's row is committed, and read by every attempt."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping

import numpy as np
from safetensors.numpy import load as np_load
from safetensors.numpy import save as np_save

from app.runtime.storage import ArtifactStore


def write_inputs(store: ArtifactStore, key: str, arrays: Mapping[str, np.ndarray | None]) -> int:
    """Write the arrays; the bytes the file holds."""
    present = {k: np.ascontiguousarray(v) for k, v in arrays.items() if v is not None}
    data = np_save(present)
    store.write(key, data)
    return len(data)


def read_inputs(store: ArtifactStore, key: str) -> dict[str, np.ndarray]:
    return dict(np_load(store.read(key)))


def stored_rows(store: ArtifactStore, key: str, name: str) -> int | None:
    """Rows of array `name` in an inputs file, from the safetensors header alone (an 8-byte
    length, then JSON naming each array's shape): no array is read. None if it is not there."""
    with store.path(key).open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    shape = header.get(name, {}).get("shape")
    return int(shape[0]) if shape else None
