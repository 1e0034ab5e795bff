"""Checkpoint (de)serialization: one safetensors blob, tensors plus a JSON header entry.

Self-describing: the JSON carries the model config, compile config, epoch, logs and optimizer
scalars; tensors carry weights, optimizer slots and the RNG state. Never pickle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from safetensors.torch import load, save

META_KEY = "fitapi"
FORMAT_VERSION = 1


def to_bytes(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> bytes:
    cpu = {k: t.detach().to("cpu").contiguous().clone() for k, t in tensors.items()}
    header = json.dumps({"format": FORMAT_VERSION, **meta}, allow_nan=False)
    return save(cpu, metadata={META_KEY: header})


def from_bytes(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = load(data)
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    meta = json.loads(header.get("__metadata__", {}).get(META_KEY, "{}"))
    return tensors, meta
