"""fit, evaluate and predict with Keras's semantics.

`Trainer` is a compiled model (`steps.CompiledModel`: the public `train_step`, `test_step` and
`predict_step`, framed by `reset_metrics` and `get_metrics_result`) that checks data
(`data.DataChecks`: `prepare`, `to_device`). Here are built on them: a fit's plan (`plan_fit`,
everything checked without training), fit, evaluate and predict, and the training state. The
loop is Keras's (`loop`), written against the public steps alone: named callback hooks in Keras's
order, running-average training logs, the only early exit is `stop_training`. Validation inside
fit and `evaluate` run the very same `loop.run_test`, so evaluating the weights an epoch ended
with, on the same data and batch size, reproduces that epoch's `val_` values exactly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, TypedDict, Unpack

import numpy as np
import torch

from app.engine.arrays.checks import XY, validation_split_at
from app.engine.callbacks import Callback, CallbackList, History
from app.engine.callbacks import state as callback_state
from app.engine.config.errors import Loc
from app.engine.training.data import DataChecks
from app.engine.training.fit_args import DEFAULT_BATCH_SIZE, FitArgs, FitPlan, apply_class_weight
from app.engine.training.inference import predict
from app.engine.training.loop import run_epochs, run_test
from app.engine.training.state import BatchPosition, CallbackStates, LoopState


class FitInputs(TypedDict, total=False):
    """A fit's keyword arguments besides x and y (`plan_fit`'s and `fit`'s): the fit arguments
    (default `FitArgs()`), sample weights, validation data `(x, y[, sample_weight])`, callbacks
    and the location errors are reported under."""

    args: FitArgs | None
    sample_weight: Any
    validation_data: Sequence[Any] | None
    callbacks: Sequence[Callback]
    loc: Loc


class Trainer(DataChecks):
    """A compiled model, trained, evaluated and predicted with: Keras's `fit`, `evaluate` and
    `predict`, and the state a fit resumes from."""

    # -- fit, evaluate, predict --------------------------------------------------------------------
    def plan_fit(self, x: Any, y: Any, **inputs: Unpack[FitInputs]) -> FitPlan:
        """Check everything a fit needs (arguments, arrays, labels, callbacks) without training."""
        args = inputs.get("args") or FitArgs()
        loc = inputs.get("loc", ())
        callbacks = inputs.get("callbacks", ())
        validation_data = inputs.get("validation_data")
        args.check(loc)
        train = self.prepare(x, y, inputs.get("sample_weight"), loc)
        val: XY | None = None
        if validation_data is not None:
            vx, vy, vsw = [*validation_data, None][:3]
            val = self.prepare(vx, vy, vsw, (*loc, "validation_data"))
        elif args.validation_split > 0:
            split = validation_split_at(
                train.size, args.validation_split, (*loc, "validation_split")
            )
            train, val = train.split(split)
        if args.class_weight is not None:  # the training part only: validation is unweighted
            train = apply_class_weight(train, args.class_weight, loc)
        args = replace(args, class_weight=None)  # FitPlan resolves the batch size
        keys = self.log_keys(validation=val is not None)
        for i, cb in enumerate(callbacks):
            cb.set_trainer(self)
            cb.check(keys, (*loc, "callbacks", i))
        return FitPlan(args, train, val, list(callbacks))

    def fit(
        self, x: Any, y: Any, *, resume: LoopState | None = None, **inputs: Unpack[FitInputs]
    ) -> History:
        """Keras's `fit`; returns the History. `inputs` are `plan_fit`'s (args, sample_weight,
        validation_data, callbacks, loc). With `resume` (a checkpoint's state, taken by
        `loop_state`), the fit continues from it: weights, optimizer, RNG, batch position and
        callbacks, as if the fit that state was taken from had gone on; `args.initial_epoch`
        says where."""
        return self.run_fit(self.plan_fit(x, y, **inputs), resume=resume)

    def run_fit(self, plan: FitPlan, *, resume: LoopState | None = None) -> History:
        """Run a checked fit; `resume` as for `fit`."""
        train = self.to_device(plan.train)
        val = None if plan.validation is None else self.to_device(plan.validation)
        history = History()
        cbs = CallbackList([*plan.callbacks, history])
        cbs.set_trainer(self)
        if resume is not None:  # the restored RNG state continues where the state left it
            self.restore(resume)
        else:
            self.seed_generator(plan.args.seed)
        self.rng_restored = False
        self.callbacks = list(plan.callbacks)
        try:
            run_epochs(self, train, val, plan.args, cbs, resume)
        finally:
            self.callbacks = None
            train.close()
            if val is not None:
                val.close()
        return history

    def seed_generator(self, seed: int | None) -> None:
        """Seed the trainer's generator (shuffles, dropout); None draws a seed."""
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little")
        self.seed = seed
        self.generator.manual_seed(seed)

    def evaluate(
        self,
        x: Any,
        y: Any,
        *,
        sample_weight: Any = None,
        batch_size: int | None = None,
        callbacks: Sequence[Callback] = (),
        loc: Loc = (),
    ) -> dict[str, float]:
        """Keras's `evaluate(..., return_dict=True)`."""
        data = self.to_device(self.prepare(x, y, sample_weight, loc))
        cbs = CallbackList(callbacks)
        cbs.set_trainer(self)
        try:
            return run_test(self, data, batch_size or DEFAULT_BATCH_SIZE, cbs)
        finally:
            data.close()

    def predict(
        self, x: Any, *, batch_size: int | None = None, loc: Loc = ()
    ) -> np.ndarray | list[np.ndarray]:
        return predict(self.model, x, batch_size=batch_size, device=self.device, loc=loc)

    # -- weights and state -------------------------------------------------------------------------
    def snapshot_weights(self) -> dict[str, torch.Tensor]:
        return {k: t.detach().clone() for k, t in self.model.weight_tensors().items()}

    def restore_weights(self, snapshot: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, t in self.model.weight_tensors().items():
                t.copy_(snapshot[k])

    def loop_state(self) -> LoopState:
        """Everything needed to continue training: weights, optimizer slots, RNG state, the
        loss scale and, during a fit, the position in the batch order and the callbacks'
        state (tensors not copied: `clone` it to keep it while training goes on)."""
        opt_tensors, opt_meta = self.optimizer.state_dict()
        state = LoopState(
            weights={k: t.detach() for k, t in self.model.weight_tensors().items()},
            optimizer={k: t.detach() for k, t in opt_tensors.items()},
            optimizer_meta=opt_meta,
            rng=self.generator.get_state(),
            seed=self.seed,
            epoch=self.epoch,
            loss_scale=None if self.loss_scaler is None else self.loss_scaler.state(),
        )
        if self.batches is not None:
            state.batches = BatchPosition(*self.batches.state())
        if self.callbacks is not None:
            state.callbacks = CallbackStates(*callback_state.collect(self.callbacks))
            state.stop_training = self.stop_training
        return state

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """`loop_state()` as a checkpoint's tensors and JSON entries."""
        return self.loop_state().to_checkpoint()

    def restore(self, state: LoopState) -> None:
        """The trainer's part of `state`: the weights to resume from, the optimizer, loss
        scale, RNG state, seed and last finished epoch. The fit's part (batch position,
        callbacks, stop flag) only `fit(..., resume=state)` restores."""
        # A final state resumes from the last epoch's end where its weights differ.
        self.carry_over(state, rng=True, weights=state.weights_to_resume())
        self.seed = state.seed
        self.epoch = state.epoch
        self.rng_restored = True

    def load_state(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        """`restore` from a checkpoint's tensors and JSON entries."""
        self.restore(LoopState.from_checkpoint(tensors, meta))

    def carry_over(
        self,
        state: LoopState,
        *,
        rng: bool = False,
        weights: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """The weights (as the fit left them), the optimizer's slots and scalars and the loss
        scale: what a compiled Keras model carries from one `fit` (or `train_on_batch`) into
        the next; with `rng`, the random generator's state too (a fit draws from its own
        seed). Not the batch order or the callbacks, which belong to one fit. `weights` loads
        those instead of the state's own."""
        self.model.load_weight_tensors(state.weights if weights is None else weights)
        if state.optimizer_meta is not None:
            opt = {k: t.to(self.device) for k, t in state.optimizer.items()}
            self.optimizer.load_state_dict(opt, state.optimizer_meta)
        if self.loss_scaler is not None and state.loss_scale is not None:
            self.loss_scaler.load_state(dict(state.loss_scale))
        if rng and state.rng is not None:
            self.generator.set_state(state.rng.cpu())

    def load_optimizer_state(
        self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], *, rng: bool = False
    ) -> None:
        """`carry_over` from a checkpoint's tensors and JSON entries."""
        self.carry_over(LoopState.from_checkpoint(tensors, meta), rng=rng)
