"""Checkpoint files: one safetensors blob, tensors plus a JSON header entry. Never pickle.

Self-describing: the JSON carries the format version, the model and compile configs, the epoch,
logs and optimizer scalars; tensors carry weights, optimizer slots and the RNG state.
`Checkpoint` is the typed form, a `LoopState` and a `CheckpointInfo`; `to_bytes` and
`from_bytes` are the raw form (tensors and a JSON dict) that the typed one is written in.

The layout is format 1, the only one so far; files without a `format` entry are read as
format 1, and a file of a newer format is refused with a clear error rather than misread.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load, save

from app.engine.config.errors import DataError
from app.engine.training.state import LoopState

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


@dataclass
class CheckpointInfo:
    """What a checkpoint says about itself besides the loop state: the model and compile
    configs it belongs to, the job that wrote it, the epoch's logs, the batch of a mid-epoch
    save, and whether it is a fit's final checkpoint."""

    model_config: dict[str, Any] | None = None
    compile_config: dict[str, Any] | None = None
    job_id: str | None = None
    logs: dict[str, Any] | None = None
    batch: int | None = None
    final: bool = False

    def to_meta(self) -> dict[str, Any]:
        """The JSON entries (only those set, as format 1 has always written them)."""
        meta: dict[str, Any] = {}
        for key in ("model_config", "compile_config", "job_id"):
            if getattr(self, key) is not None:
                meta[key] = getattr(self, key)
        if self.final:
            meta["final"] = True
        if self.batch is not None:
            meta["batch"] = self.batch
        if self.logs is not None:
            meta["logs"] = self.logs
        return meta

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> CheckpointInfo:
        def obj(key: str) -> dict[str, Any] | None:
            value = meta.get(key)
            return dict(value) if isinstance(value, Mapping) else None

        job_id, batch = meta.get("job_id"), meta.get("batch")
        return cls(
            model_config=obj("model_config"),
            compile_config=obj("compile_config"),
            job_id=job_id if isinstance(job_id, str) else None,
            logs=obj("logs"),
            batch=batch if isinstance(batch, int) and not isinstance(batch, bool) else None,
            final=meta.get("final") is True,
        )


@dataclass
class Checkpoint:
    """A checkpoint file, typed: the loop state and what the file says about itself."""

    state: LoopState
    info: CheckpointInfo = field(default_factory=CheckpointInfo)
    format: int = FORMAT_VERSION

    def to_bytes(self) -> bytes:
        tensors, meta = self.state.to_checkpoint()
        return to_bytes(tensors, {**self.info.to_meta(), **meta})

    @classmethod
    def from_bytes(cls, data: bytes) -> Checkpoint:
        return cls.from_parts(*from_bytes(data))

    @classmethod
    def from_parts(cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Checkpoint:
        """From the raw form; a file of a format this version does not know is refused."""
        version = meta.get("format", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise DataError(
                ("checkpoint", "format"), f"must be a positive integer, got {version!r}"
            )
        if version > FORMAT_VERSION:
            raise DataError(
                ("checkpoint", "format"),
                f"is {version}, newer than this version "
                f"reads ({FORMAT_VERSION}); upgrade the server",
            )
        return cls(LoopState.from_checkpoint(tensors, meta), CheckpointInfo.from_meta(meta))
