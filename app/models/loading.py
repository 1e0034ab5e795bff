"""Building models (within the configured limits) and reading weights files and checkpoints
through the store, typed (`Checkpoint`); a model's weights file, with the optimizer's part it may
carry over from the file it replaces."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.core.config import Settings
from app.engine.models.from_json import Limits
from app.engine.models.model import Model
from app.engine.training.checkpoint import Checkpoint, CheckpointInfo
from app.engine.training.state import LoopState
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
        model.load_weight_tensors(load_checkpoint(store, key).state.weights)
    return model


def load_checkpoint(store: ArtifactStore, key: str) -> Checkpoint:
    """Checkpoint `key`, typed (any format this version reads)."""
    return Checkpoint.from_bytes(store.read(key))


def weights_checkpoint(
    weights: Mapping[str, torch.Tensor],
    model_config: dict[str, Any],
    *,
    carried: Checkpoint | None = None,
) -> Checkpoint:
    """A model's weights file: `weights`, and, when `carried` (the file it replaces) holds an
    optimizer state, what a compiled model carries from it: the optimizer's slots and scalars,
    the RNG state, seed, epoch and loss scale, and the compile config they were made under
    (train_on_batch continues them only under that config). Never a fit's batch position,
    callbacks or resume point."""
    state = LoopState(weights=dict(weights))
    compile_config = None
    if carried is not None and carried.state.optimizer_meta is not None:
        was = carried.state
        state = LoopState(
            weights=dict(weights),
            optimizer=was.optimizer,
            optimizer_meta=was.optimizer_meta,
            rng=was.rng,
            seed=was.seed,
            epoch=was.epoch,
            loss_scale=was.loss_scale,
        )
        compile_config = carried.info.compile_config
    info = CheckpointInfo(model_config=model_config, compile_config=compile_config)
    return Checkpoint(state, info)
