"""A fit's resumable state as one typed object, `LoopState`: the weights, the optimizer's slots
and scalars, the RNG state, the seed and last finished epoch, the mixed_float16 loss scale, the
position in the batch order (`steps_per_epoch` carries a pass across epochs) and, taken during a
fit, its callbacks' state and whether a callback stopped it (a resumed fit then runs no further
epoch). `Trainer.loop_state()` takes it; `Trainer.fit(..., resume=state)` continues from it.

It converts to and from a checkpoint's tensors and JSON entries (`to_checkpoint`,
`from_checkpoint`); the names are those checkpoints have always used (`model/`, `optimizer/`,
`rng/generator`, `data/`, `callbacks/`, `resume/`), so checkpoints written before this type
existed load as they did.

A final checkpoint holds the weights as the fit left them, after its end changed them (the EMA
overwrite, EarlyStopping's restored best weights), which are what exports and a next fit use.
Resuming from it must instead continue from the last epoch's end, as an uninterrupted longer fit
would: `with_resume_point` adds the weights as they were then (`resume_weights`, stored under
`resume/`) wherever they differ, and the callbacks' state at that moment; resuming prefers
them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from app.engine.callbacks import state as callback_state

MODEL = "model/"
OPTIMIZER = "optimizer/"
RNG = "rng/generator"
DATA = "data/"
RESUME = "resume/"


@dataclass
class BatchPosition:
    """Where the batch order stands: the pass's order (`data/order`) and its counters."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


@dataclass
class CallbackStates:
    """The fit's stateful callbacks: their tensors (`callbacks/<index>/...`) and one JSON entry
    each (see `app.engine.callbacks.state`)."""

    tensors: dict[str, torch.Tensor]
    entries: list[Any]


@dataclass
class LoopState:
    """Everything needed to continue a fit. `weights` are the model's as the state was taken;
    `resume_weights` (a final checkpoint's) those of the last epoch's end where they differ.
    `batches`, `callbacks` and `stop_training` belong to a running fit: None (and False) in a
    state taken outside one."""

    weights: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer_meta: dict[str, Any] | None = None
    rng: torch.Tensor | None = None
    seed: int | None = None
    epoch: int = -1  # the last finished epoch
    loss_scale: dict[str, Any] | None = None
    batches: BatchPosition | None = None
    callbacks: CallbackStates | None = None
    stop_training: bool = False
    resume_weights: dict[str, torch.Tensor] = field(default_factory=dict)

    def weights_to_resume(self) -> dict[str, torch.Tensor]:
        """The weights a resumed fit starts from: the last epoch's end's where the state has
        them."""
        return {**self.weights, **self.resume_weights}

    def clone(self) -> LoopState:
        """A copy whose tensors do not change as training goes on."""

        def copied(ts: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: t.clone() for k, t in ts.items()}

        return dataclasses.replace(
            self,
            weights=copied(self.weights),
            optimizer=copied(self.optimizer),
            rng=None if self.rng is None else self.rng.clone(),
            batches=None
            if self.batches is None
            else BatchPosition(copied(self.batches.tensors), dict(self.batches.meta)),
            callbacks=None
            if self.callbacks is None
            else CallbackStates(copied(self.callbacks.tensors), list(self.callbacks.entries)),
            resume_weights=copied(self.resume_weights),
        )

    # -- checkpoint form ----------------------------------------------------------------------
    def to_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The checkpoint's tensors and JSON entries."""
        tensors = {MODEL + k: t for k, t in self.weights.items()}
        tensors.update({OPTIMIZER + k: t for k, t in self.optimizer.items()})
        if self.rng is not None:
            tensors[RNG] = self.rng
        meta: dict[str, Any] = {
            "optimizer": self.optimizer_meta,
            "seed": self.seed,
            "epoch": self.epoch,
        }
        if self.loss_scale is not None:
            meta["loss_scale"] = self.loss_scale
        if self.batches is not None:
            tensors.update(self.batches.tensors)
            meta["data"] = self.batches.meta
        if self.callbacks is not None:
            tensors.update(self.callbacks.tensors)
            meta["callbacks"] = self.callbacks.entries
            meta["stop_training"] = self.stop_training
        tensors.update({RESUME + MODEL + k: t for k, t in self.resume_weights.items()})
        return tensors, meta

    @classmethod
    def from_checkpoint(
        cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
    ) -> LoopState:
        """Read a checkpoint's tensors and JSON entries, as written by `to_checkpoint` or by
        any earlier version (entries it lacks take their defaults)."""

        def under(prefix: str) -> dict[str, torch.Tensor]:
            return {k.removeprefix(prefix): t for k, t in tensors.items() if k.startswith(prefix)}

        batches = None
        if meta.get("data") is not None:
            batches = BatchPosition(
                {k: t for k, t in tensors.items() if k.startswith(DATA)}, dict(meta["data"])
            )
        callbacks = None
        if isinstance(meta.get("callbacks"), list):  # absent from states taken outside a fit
            cb_tensors = {k: t for k, t in tensors.items() if k.startswith(callback_state.PREFIX)}
            callbacks = CallbackStates(cb_tensors, list(meta["callbacks"]))
        epoch = meta.get("epoch")
        seed = meta.get("seed")
        return cls(
            weights=under(MODEL),
            optimizer=under(OPTIMIZER),
            optimizer_meta=meta.get("optimizer"),
            rng=tensors.get(RNG),
            seed=seed if isinstance(seed, int) else None,
            epoch=epoch if isinstance(epoch, int) else -1,
            loss_scale=None if meta.get("loss_scale") is None else dict(meta["loss_scale"]),
            batches=batches,
            callbacks=callbacks,
            stop_training=callbacks is not None and bool(meta.get("stop_training")),
            resume_weights=under(RESUME + MODEL),
        )

    def with_resume_point(self, end: LoopState | None) -> LoopState:
        """This state (a fit's final one) with what resuming needs from `end`, the state at the
        last epoch's end: the weights that the fit's end changed, and the callbacks' state and
        stop flag. The optimizer, RNG and batch state are the same at both moments."""
        if end is None:
            return self
        changed = dict(self.resume_weights)
        for key, value in end.weights.items():
            # `end` may be a checkpoint read back on the CPU, the trainer on another device.
            if not torch.equal(value.to(self.weights[key].device), self.weights[key]):
                changed[key] = value
        out = dataclasses.replace(self, resume_weights=changed)
        if end.callbacks is not None:
            out.callbacks, out.stop_training = end.callbacks, end.stop_training
        return out
