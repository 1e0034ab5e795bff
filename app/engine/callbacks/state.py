"""Callback state in checkpoints, so that a resumed fit continues its callbacks as if it had
never stopped (EarlyStopping's patience count, best value and best weights; ReduceLROnPlateau's
wait and cooldown; ModelCheckpoint's best and batch count).

Each stateful callback is recorded with its index in the fit's callback list, its class name
and a fingerprint of its config; a resumed fit restores a callback only where all three match,
so a checkpoint from a fit with other callbacks (or from before callback state was kept)
restores nothing and those callbacks start afresh. JSON scalars go into the checkpoint's meta;
tensors (best weights) go into its tensors as `callbacks/<index>/<name>`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from app.engine.callbacks.base import Callback

PREFIX = "callbacks/"
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def encode_float(value: float | None) -> float | str | None:
    """A float for JSON: NaN and the infinities become strings (checkpoint JSON has none)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else str(value)


def decode_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _NON_FINITE[value]
    return float(value)


def prefixed(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}/{k}": t for k, t in tensors.items()}


def unprefixed(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = f"{prefix}/"
    return {k.removeprefix(start): t for k, t in tensors.items() if k.startswith(start)}


def _fingerprint(cb: Callback) -> str:
    return json.dumps(cb.get_config(), sort_keys=True, default=str)


def collect(callbacks: Sequence[Callback]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """The state of every stateful callback: tensors keyed `callbacks/<index>/...` and one
    JSON entry per callback."""
    tensors: dict[str, torch.Tensor] = {}
    entries: list[dict[str, Any]] = []
    for i, cb in enumerate(callbacks):
        state = cb.get_state()
        if state is None:
            continue
        cb_tensors, scalars = state
        entries.append(
            {
                "index": i,
                "class_name": type(cb).__name__,
                "config": _fingerprint(cb),
                "state": scalars,
            }
        )
        tensors.update({f"{PREFIX}{i}/{k}": t.detach() for k, t in cb_tensors.items()})
    return tensors, entries


def restore(
    callbacks: Sequence[Callback], tensors: Mapping[str, torch.Tensor], entries: Sequence[Any]
) -> list[int]:
    """Hand each entry's state to the callback at its index when class and config match;
    returns the indices restored."""
    restored: list[int] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        i = entry.get("index")
        if not isinstance(i, int) or not 0 <= i < len(callbacks):
            continue
        cb = callbacks[i]
        if type(cb).__name__ != entry.get("class_name") or _fingerprint(cb) != entry.get("config"):
            continue
        cb.set_state(unprefixed(f"{PREFIX}{i}", tensors), dict(entry.get("state") or {}))
        restored.append(i)
    return restored
