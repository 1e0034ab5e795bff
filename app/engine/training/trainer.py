"""fit, evaluate and predict with Keras's semantics.

The steps are public, as in Keras's torch trainer: `train_step` (one optimizer step on a batch),
`test_step` (a batch's loss and metrics in inference mode) and `predict_step` (a batch's
outputs); `reset_metrics` and `get_metrics_result` frame them. The loop is Keras's (`loop`),
written against those alone: named callback hooks in Keras's order, running-average training
logs, the only early exit is `stop_training`. Validation inside fit and `evaluate` run the very
same `loop.run_test`, so evaluating the weights an epoch ended with, on the same data and
batch size, reproduces that epoch's `val_` values exactly. Loss and metrics accumulate on the
device; the host reads them once per epoch (or when a callback asks for batch logs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from app.engine import metrics as metrics_mod
from app.engine.arrays.checks import (
    XY,
    Arrays,
    BatchSource,
    check_same_length,
    check_weight_shape,
    input_tensors,
    read_inputs,
    read_sample_weights,
    read_targets,
    validation_split_at,
)
from app.engine.arrays.host_batches import HostBatches, is_mapped
from app.engine.callbacks import Callback, CallbackList, History
from app.engine.callbacks import state as callback_state
from app.engine.config.errors import ConfigError, Loc
from app.engine.models.model import Model
from app.engine.optimizers import Optimizer
from app.engine.training import jit, precision
from app.engine.training.batches import BatchIterator
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import (
    DEFAULT_BATCH_SIZE,
    FitArgs,
    FitPlan,
    apply_class_weight,
)
from app.engine.training.heads import Heads
from app.engine.training.inference import predict, resolve_device
from app.engine.training.loop import run_epochs, run_test
from app.engine.training.state import BatchPosition, CallbackStates, LoopState


class Trainer:
    """A compiled model: the model, its optimizer, loss and metrics, on one device."""

    def __init__(
        self,
        model: Model,
        compile_spec: CompileSpec,
        *,
        device: torch.device | None = None,
        loc: Loc = ("compile",),
    ) -> None:
        self.device = device or resolve_device()
        self.model = model.to(self.device)
        self.spec = compile_spec
        self.loc = loc
        self._optimizer: Optimizer | None = None
        self.loss_tracker = metrics_mod.Mean(name="loss")
        self.heads: Heads | None = None
        self.stop_training = False
        self.generator = torch.Generator(device=self.device)
        self.seed: int | None = None
        # The generator holds a restored state (which train_on_batch continues) and no fit
        # has seeded it since.
        self.rng_restored = False
        self.epoch = -1  # the last finished epoch
        self.batches: BatchIterator | None = None  # the last fit's, for its checkpoints
        self.callbacks: list[Callback] | None = None  # the running fit's, for its checkpoints
        # Keras wraps the optimizer in a LossScaleOptimizer for mixed_float16.
        self.loss_scaler: precision.LossScaler | None = None
        if compile_spec.dtype_policy == "mixed_float16" and compile_spec.auto_scale_loss:
            self.loss_scaler = precision.LossScaler()
        self._train_forward = self._forward_loss
        if compile_spec.jit_compile:
            self._train_forward = jit.compile_step(
                self._forward_loss, self.device, (*loc, "jit_compile")
            )

    @property
    def optimizer(self) -> Optimizer:
        """Built on first use: evaluate and predict never need one."""
        if self._optimizer is None:
            self._optimizer = self.spec.make_optimizer(self.loc)
            self._optimizer.build(self.model.trainable_parameters())
            if self.loss_scaler is not None:  # as Keras's LossScaleOptimizer does to its inner
                self._optimizer.options.loss_scale_factor = None
        return self._optimizer

    # -- data ----------------------------------------------------------------------------------
    def prepare(self, x: Any, y: Any, sample_weight: Any = None, loc: Loc = ()) -> XY:
        """Check x, y and sample_weight against the model, the losses and each other; build the
        losses and metrics at the first data (some are picked by the label shapes)."""
        if self.spec.loss is None:
            raise ConfigError((*self.loc, "loss"), "is required to fit or evaluate")
        model = self.model
        xs = read_inputs(x, model.input_names, model.input_shapes, (*loc, "x"), model.input_dtypes)
        model.check_input(xs, (*loc, "x"))
        ys = read_targets(y, model.output_names, (*loc, "y"))
        sws = read_sample_weights(sample_weight, model.output_names, (*loc, "sample_weight"))
        named: list[tuple[Loc, np.ndarray | None]] = []
        groups = (("x", xs, model.input_names), ("y", ys, model.output_names),
                  ("sample_weight", sws, model.output_names))  # fmt: skip
        for key, arrays, names in groups:
            for name, a in zip(names, arrays, strict=True):
                named.append(((*loc, key) if len(arrays) == 1 else (*loc, key, name), a))
        check_same_length(named)
        return self.prepare_arrays(XY(xs, ys, sws), loc)

    def prepare_arrays(self, data: XY, loc: Loc = ()) -> XY:
        """Check arrays already split per input and output (as `prepare` returns them, or as
        a job stored them) against the losses; build the losses and metrics at the first
        data."""
        model = self.model
        probed = self._probe(data.x)
        pred_shapes = [(data.size, *shape[1:]) for shape, _ in probed]
        for i, ((shape, mask_shape), sw) in enumerate(zip(probed, data.sample_weight, strict=True)):
            wloc: Loc = (*loc, "sample_weight")
            if not model.single_output:
                wloc = (*wloc, model.output_names[i])
            check_weight_shape(sw, shape, mask_shape, wloc)
        if self.heads is None:
            y_shapes = [None if a is None else tuple(a.shape) for a in data.y]
            self.heads = Heads(self.spec, model.output_names, y_shapes, pred_shapes, self.loc)
        self.heads.check_labels(data.y, pred_shapes, (*loc, "y"), not model.single_output)
        return data

    def to_device(self, data: XY) -> BatchSource:
        """Checked host arrays on the trainer's device, each input in its dtype; memory-mapped
        ones (stored datasets) stay on the host and are gathered batch by batch."""
        if is_mapped(data):
            return HostBatches(data, self.device, self.model.input_dtypes)
        return Arrays.from_numpy(data, self.device, self.model.input_dtypes)

    def _probe(self, xs: list[np.ndarray]) -> list[tuple[tuple[int, ...], tuple[int, ...] | None]]:
        """Each output's shape and its Keras mask's shape (None without a mask), from one
        sample."""
        with torch.no_grad():
            probe = input_tensors([a[:1] for a in xs], self.model.input_dtypes, self.device)
            out, mask = self.model.forward_with_mask(probe[0] if len(probe) == 1 else probe)
        outs, masks = (out, mask) if isinstance(out, list) else ([out], [mask])
        return [(tuple(o.shape), None if m is None else tuple(m.shape))
                for o, m in zip(outs, masks, strict=True)]  # fmt: skip

    def log_keys(self, *, validation: bool) -> set[str]:
        names = {m.name for m in self._all_metrics()}
        return names | ({f"val_{n}" for n in names} if validation else set())

    def metric_direction(self, name: str) -> str | None:
        return None if self.heads is None else self.heads.directions().get(name)

    # -- steps ---------------------------------------------------------------------------------
    def _all_metrics(self) -> list[metrics_mod.Metric]:
        return [self.loss_tracker, *(self.heads.all_metrics() if self.heads else [])]

    def reset_metrics(self) -> None:
        """Zero the loss tracker and every metric (at each epoch's and each test's start)."""
        for m in self._all_metrics():
            m.reset_state()

    def get_metrics_result(self) -> dict[str, float]:
        """One host sync: the current value of the loss and every metric, keys sorted."""
        ms = self._all_metrics()
        values = torch.stack([m.result().float() for m in ms]).tolist()
        return dict(sorted(zip((m.name for m in ms), values, strict=True)))

    def _update(
        self,
        batch: Arrays,
        y_preds: list[torch.Tensor],
        masks: list[torch.Tensor | None],
        loss: torch.Tensor,
        each: list[Any],
    ) -> None:
        assert self.heads is not None
        self.loss_tracker.update_state(loss, sample_weight=batch.size)
        self.heads.update(batch.y, y_preds, masks, batch.sample_weight, each, batch.size)

    def _forward_loss(
        self, batch: Arrays, training: bool
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None], torch.Tensor, list[Any]]:
        """The model's outputs and their Keras masks, the batch's total loss (the outputs'
        weighted losses, each masked by its output's mask, plus the layers' added losses) and
        each output's loss."""
        assert self.heads is not None
        with precision.compute(self.spec.dtype_policy, self.device):
            out, mask = self.model.forward_with_mask(batch.inputs, training)
        y_preds, masks = (out, mask) if isinstance(out, list) else ([out], [mask])
        y_preds = [p.float() for p in y_preds]  # losses and metrics compute in float32
        loss, each = self.heads.losses(batch.y, y_preds, masks, batch.sample_weight)
        added = [a.float() for a in self.model.added_losses()]
        if added:  # Keras sums the compiled loss and each added loss in one reduction
            loss = torch.stack([loss, *added]).sum()
        return y_preds, masks, loss, each

    def train_step(self, batch: Arrays, params: list[torch.nn.Parameter] | None = None) -> None:
        """One optimizer step on `batch` (a non-finite step under loss scaling is skipped);
        the loss and metrics take in its forward pass, read with `get_metrics_result`.
        `params` are the model's trainable parameters, passed by a loop that steps many
        times."""
        if params is None:
            params = self.model.trainable_parameters()
        y_preds, masks, loss, each = self._train_forward(batch, True)
        for p in params:
            p.grad = None
        scaler = self.loss_scaler
        scaled = self.optimizer.scale_loss(loss) if scaler is None else scaler.scale_loss(loss)
        scaled.backward()
        if scaler is None or scaler.unscale(params):  # a non-finite scaled step is skipped
            self.optimizer.step()
            self.model.apply_constraints()
        self._update(
            batch,
            [p.detach() for p in y_preds],
            masks,
            loss.detach(),
            [None if e is None else e.detach() for e in each],
        )

    def test_step(self, batch: Arrays) -> None:
        """`batch`'s loss and metrics in inference mode, taken into the running values."""
        with torch.no_grad():
            self._update(batch, *self._forward_loss(batch, training=False))

    def predict_step(self, inputs: torch.Tensor | list[torch.Tensor]) -> list[torch.Tensor]:
        """The model's outputs for a batch of inputs in inference mode, under the dtype policy,
        as float32, one per output in output order."""
        with torch.no_grad(), precision.compute(self.spec.dtype_policy, self.device):
            out = self.model(inputs, training=False)
        return [o.float() for o in (out if isinstance(out, list) else [out])]

    # -- public API ----------------------------------------------------------------------------
    def plan_fit(
        self,
        x: Any,
        y: Any,
        *,
        args: FitArgs | None = None,
        sample_weight: Any = None,
        validation_data: Sequence[Any] | None = None,
        callbacks: Sequence[Callback] = (),
        loc: Loc = (),
    ) -> FitPlan:
        """Check everything a fit needs (arguments, arrays, labels, callbacks) without training."""
        args = args or FitArgs()
        args.check(loc)
        train = self.prepare(x, y, sample_weight, loc)
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
        self,
        x: Any,
        y: Any,
        *,
        args: FitArgs | None = None,
        sample_weight: Any = None,
        validation_data: Sequence[Any] | None = None,
        callbacks: Sequence[Callback] = (),
        resume: LoopState | None = None,
        loc: Loc = (),
    ) -> History:
        """Keras's `fit`; returns the History. With `resume` (a checkpoint's state, taken by
        `loop_state`), the fit continues from it: weights, optimizer, RNG, batch position and
        callbacks, as if the fit that state was taken from had gone on; `args.initial_epoch`
        says where."""
        plan = self.plan_fit(
            x, y, args=args, sample_weight=sample_weight, validation_data=validation_data,
            callbacks=callbacks, loc=loc,
        )  # fmt: skip
        return self.run_fit(plan, resume=resume)

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

    # -- weights and state ---------------------------------------------------------------------
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
        self.carry_over(state, rng=True)
        if state.resume_weights:  # a final state: continue from the last epoch's end
            self.model.load_weight_tensors(state.weights_to_resume())
        self.seed = state.seed
        self.epoch = state.epoch
        self.rng_restored = True

    def load_state(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        """`restore` from a checkpoint's tensors and JSON entries."""
        self.restore(LoopState.from_checkpoint(tensors, meta))

    def carry_over(self, state: LoopState, *, rng: bool = False) -> None:
        """The weights (as the fit left them), the optimizer's slots and scalars and the loss
        scale: what a compiled Keras model carries from one `fit` (or `train_on_batch`) into
        the next; with `rng`, the random generator's state too (a fit draws from its own
        seed). Not the batch order or the callbacks, which belong to one fit."""
        self.model.load_weight_tensors(state.weights)
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
