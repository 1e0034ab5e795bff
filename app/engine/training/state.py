"""A trainer's resumable state (what a checkpoint holds besides its descriptions): the
weights, the optimizer's slots and scalars, the RNG state, the seed and last finished epoch,
the position in the batch order (`steps_per_epoch` carries a pass across epochs), the
mixed_float16 loss scale and, taken during a fit, its callbacks' state and whether a callback
stopped it (a resumed fit then runs no further epoch).

A final checkpoint holds the weights as the fit left them, after its end changed them (the EMA
overwrite, EarlyStopping's restored best weights), which are what exports and a next fit use.
Resuming from it must instead continue from the last epoch's end, as an uninterrupted longer fit
would: `with_resume_point` adds the weights as they were then, under `resume/`, wherever they
differ, and the callbacks' state at that moment; `load_into` prefers them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from app.engine.callbacks import state as callback_state

if TYPE_CHECKING:
    from app.engine.training.trainer import Trainer


RESUME = "resume/"


def with_resume_point(
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    end: tuple[Mapping[str, torch.Tensor], Mapping[str, Any]] | None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A final checkpoint's state (`tensors`, `meta`) with what resuming needs from `end`, the
    state at the last epoch's end: the weights that the fit's end changed, and the callbacks'
    state and stop flag. The optimizer, RNG and batch state are the same at both moments."""
    if end is None:
        return tensors, meta
    end_tensors, end_meta = end
    out, info = dict(tensors), dict(meta)
    for key, value in end_tensors.items():
        # `end` may be a checkpoint read back on the CPU, the trainer on another device.
        if key.startswith("model/") and not torch.equal(
            value.to(tensors[key].device), tensors[key]
        ):
            out[RESUME + key] = value
        elif key.startswith(callback_state.PREFIX):
            out[key] = value
    if "callbacks" in end_meta:
        info["callbacks"] = end_meta["callbacks"]
        info["stop_training"] = bool(end_meta.get("stop_training"))
    return out, info


def state_of(trainer: Trainer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Everything needed to continue training: weights, optimizer slots, RNG state."""
    tensors = {f"model/{k}": t.detach() for k, t in trainer.model.weight_tensors().items()}
    opt_tensors, opt_meta = trainer.optimizer.state_dict()
    tensors.update({f"optimizer/{k}": t.detach() for k, t in opt_tensors.items()})
    tensors["rng/generator"] = trainer.generator.get_state()
    meta: dict[str, Any] = {"optimizer": opt_meta, "seed": trainer.seed, "epoch": trainer.epoch}
    if trainer.loss_scaler is not None:
        meta["loss_scale"] = trainer.loss_scaler.state()
    if trainer.batches is not None:
        data_tensors, meta["data"] = trainer.batches.state()
        tensors.update(data_tensors)
    if trainer.callbacks is not None:
        cb_tensors, meta["callbacks"] = callback_state.collect(trainer.callbacks)
        tensors.update(cb_tensors)
        meta["stop_training"] = trainer.stop_training
    return tensors, meta


def load_optimizer_into(
    trainer: Trainer,
    tensors: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
    *,
    rng: bool = False,
) -> None:
    """The weights (as the fit left them), the optimizer's slots and scalars and the loss
    scale: what a compiled Keras model carries from one `fit` (or `train_on_batch`) into the
    next; with `rng`, the random generator's state too (a fit draws from its own seed). Not the
    batch order or the callbacks, which belong to one fit."""
    trainer.model.load_weight_tensors(_model_weights(tensors))
    opt = {
        k.removeprefix("optimizer/"): t.to(trainer.device)
        for k, t in tensors.items()
        if k.startswith("optimizer/")
    }
    if meta.get("optimizer") is not None:
        trainer.optimizer.load_state_dict(opt, meta["optimizer"])
    if trainer.loss_scaler is not None and meta.get("loss_scale") is not None:
        trainer.loss_scaler.load_state(dict(meta["loss_scale"]))
    if rng and "rng/generator" in tensors:
        trainer.generator.set_state(tensors["rng/generator"].cpu())


def _model_weights(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("model/"): t for k, t in tensors.items() if k.startswith("model/")}


def load_into(
    trainer: Trainer, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> None:
    load_optimizer_into(trainer, tensors, meta, rng=True)
    at_end = {k.removeprefix(RESUME): t for k, t in tensors.items() if k.startswith(RESUME)}
    if at_end:  # a final checkpoint: continue from the last epoch's end, not the fit's end
        trainer.model.load_weight_tensors(_model_weights({**tensors, **at_end}))
    trainer.seed = meta.get("seed")
    if meta.get("data") is not None:
        data = {k: t for k, t in tensors.items() if k.startswith("data/")}
        trainer._batches_state = (data, dict(meta["data"]))
    trainer._callbacks_state = None
    if isinstance(meta.get("callbacks"), list):  # absent from checkpoints taken outside a fit
        cbs = {
            k: t.to(trainer.device) for k, t in tensors.items()
            if k.startswith(callback_state.PREFIX)
        }  # fmt: skip
        trainer._callbacks_state = (cbs, list(meta["callbacks"]), bool(meta.get("stop_training")))
    trainer._resumed = True
    trainer.epoch = int(meta.get("epoch", -1))
