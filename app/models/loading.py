"""Building models (within the configured limits) and reading weights files and checkpoints
through the store: the weights, and the optimizer's part a weights file may carry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.core.config import Settings
from app.engine.models.from_json import Limits
from app.engine.models.model import Model
from app.engine.training import checkpoint
from app.runtime.storage import ArtifactStore


def model_limits(settings: Settings) -> Limits:
    return Limits(
        params=settings.model_max_params,
        layers=settings.model_max_layers,
        depth=settings.model_max_depth,
        tensor_elements=settings.model_max_tensor_elements,
    )


def build_model(settings: Settings, config: Mapping[str, Any], seed: int) -> Model:
    return Model.from_config(config, seed=seed, limits=model_limits(settings))


def load_weights(store: ArtifactStore, model: Model, key: str | None) -> Model:
    """Put the weights of checkpoint `key` into `model` (None: keep its seeded weights)."""
    if key is not None:
        tensors, _ = checkpoint.from_bytes(store.read(key))
        model.load_weight_tensors(
            {k.removeprefix("model/"): t for k, t in tensors.items() if k.startswith("model/")}
        )
    return model


def read_checkpoint(
    store: ArtifactStore, key: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return checkpoint.from_bytes(store.read(key))


def load_checkpoint(store: ArtifactStore, key: str) -> checkpoint.Checkpoint:
    """Checkpoint `key`, typed (any format this version reads)."""
    return checkpoint.Checkpoint.from_bytes(store.read(key))


def model_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's weights, by the model's own names."""
    return {k.removeprefix("model/"): t for k, t in tensors.items() if k.startswith("model/")}


# What a weights file may hold besides the weights: the optimizer's slots and step count, the
# RNG state, the loss scale, and the compile spec they were made with (train_on_batch continues
# them only under that spec).
TRAINING_TENSORS = ("optimizer/", "rng/")
TRAINING_META = ("optimizer", "seed", "epoch", "loss_scale", "compile_config")


def training_part(
    tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The optimizer's part of a checkpoint (and the spec it belongs to); empty if it has none."""
    if meta.get("optimizer") is None:
        return {}, {}
    kept = {k: t for k, t in tensors.items() if k.startswith(TRAINING_TENSORS)}
    return kept, {k: meta[k] for k in TRAINING_META if k in meta}
