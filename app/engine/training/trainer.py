"""fit, evaluate and predict with Keras's semantics.

The loop is Keras's (`loop`): named callback hooks in Keras's order, running-average
training logs, the only early exit is `stop_training`. Validation inside fit and `evaluate` run
the very same `_test_loop`, so evaluating the weights an epoch ended with, on the same data and
batch size, reproduces that epoch's `val_` values exactly. Loss and metrics accumulate on the
device; the host reads them once per epoch (or when a callback asks for batch logs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
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
from app.engine.config.errors import ConfigError, Loc
from app.engine.models.model import Model
from app.engine.optimizers import Optimizer
from app.engine.training import jit, precision
from app.engine.training import state as training_state
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
from app.engine.training.loop import run_epochs


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
        self._resumed = False
        self.epoch = -1  # the last finished epoch
        self.batches: BatchIterator | None = None  # the last fit's, for its checkpoints
        self._batches_state: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
        self.callbacks: list[Callback] | None = None  # the running fit's, for its checkpoints
        # A checkpoint's callback tensors and entries, and whether a callback had stopped it.
        self._callbacks_state: tuple[dict[str, torch.Tensor], list[Any], bool] | None = None
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

    def _reset_metrics(self) -> None:
        for m in self._all_metrics():
            m.reset_state()

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

    def _logs(self) -> dict[str, float]:
        """One host sync: the current value of the loss and every metric, keys sorted."""
        ms = self._all_metrics()
        values = torch.stack([m.result().float() for m in ms]).tolist()
        return dict(sorted(zip((m.name for m in ms), values, strict=True)))

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

    def _train_step(self, batch: Arrays, params: list[torch.nn.Parameter]) -> None:
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

    def _test_loop(
        self, data: BatchSource, batch_size: int, callbacks: Callback, steps: int | None = None
    ) -> dict[str, float]:
        """The one evaluation path: evaluate() and fit's validation both run this. `steps`
        batches at most, from the first (Keras restarts validation data every time)."""
        self._reset_metrics()
        callbacks.on_test_begin()
        end = data.size if steps is None else min(data.size, steps * batch_size)
        with torch.no_grad():
            for lo in range(0, end, batch_size):
                batch = data.take(slice(lo, lo + batch_size))
                self._update(batch, *self._forward_loss(batch, training=False))
                callbacks.on_test_batch_end(lo // batch_size)
        logs = self._logs()
        callbacks.on_test_end(logs)
        return logs

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
        args = FitArgs(**{**args.resolved(train.size).__dict__, "class_weight": None})
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
        loc: Loc = (),
    ) -> History:
        """Keras's `fit`; returns the History."""
        plan = self.plan_fit(
            x, y, args=args, sample_weight=sample_weight, validation_data=validation_data,
            callbacks=callbacks, loc=loc,
        )  # fmt: skip
        return self.run_fit(plan)

    def run_fit(self, plan: FitPlan) -> History:
        train = self.to_device(plan.train)
        val = None if plan.validation is None else self.to_device(plan.validation)
        history = History()
        cbs = CallbackList([*plan.callbacks, history])
        cbs.set_trainer(self)
        if not self._resumed:  # a restored RNG state continues where the checkpoint left it
            self._seed(plan.args.seed)
        self._resumed = False
        self.callbacks = list(plan.callbacks)
        try:
            run_epochs(self, train, val, plan.args.resolved(train.size), cbs)
        finally:
            self.callbacks = None
            train.close()
            if val is not None:
                val.close()
        return history

    def _seed(self, seed: int | None) -> None:
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
            return self._test_loop(data, batch_size or DEFAULT_BATCH_SIZE, cbs)
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

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to continue training: weights, optimizer slots, RNG state, the
        position in the batch order and the loss scale."""
        return training_state.state_of(self)

    def load_state(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        training_state.load_into(self, tensors, meta)

    def load_optimizer_state(
        self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], *, rng: bool = False
    ) -> None:
        """Weights and optimizer state (and with `rng` the generator's), as a compiled Keras
        model carries them into its next fit or train_on_batch."""
        training_state.load_optimizer_into(self, tensors, meta, rng=rng)
