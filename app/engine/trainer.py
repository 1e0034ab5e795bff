"""fit, evaluate and predict with Keras's semantics.

The loop is Keras's: named callback hooks in Keras's order, running-average training logs, the
only early exit is `stop_training`. Validation inside fit and `evaluate` run the very same
`_test_loop`, so evaluating the weights an epoch ended with, on the same data and batch size,
reproduces that epoch's `val_` values exactly. Loss and metrics accumulate on the device; the host
reads them once per epoch (or when a callback asks for batch logs).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from app.engine import losses
from app.engine import metrics as metrics_mod
from app.engine.callbacks import Callback, CallbackList, History, LazyLogs
from app.engine.compile import CompileSpec
from app.engine.data import (
    Arrays,
    check_input_shape,
    check_same_length,
    check_sample_weight,
    to_array,
    validation_split_at,
)
from app.engine.errors import ConfigError, Loc
from app.engine.fit_args import DEFAULT_BATCH_SIZE, FitArgs, FitPlan, should_validate
from app.engine.inference import predict, resolve_device
from app.engine.models import Sequential
from app.engine.optimizers import Optimizer


class Trainer:
    """A compiled model: the model, its optimizer, loss and metrics, on one device."""

    def __init__(
        self,
        model: Sequential,
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
        self.loss: losses.Loss | None = None
        if compile_spec.loss is not None and not compile_spec.loss_needs_shapes:
            self.loss = compile_spec.make_loss(loc)
        self.loss_tracker = metrics_mod.Mean(name="loss")
        self.metrics: list[metrics_mod.Metric] | None = None
        self.weighted: list[metrics_mod.Metric] = []
        self.stop_training = False
        self.generator = torch.Generator(device=self.device)
        self.seed: int | None = None
        self._resumed = False
        self.epoch = -1  # the last finished epoch

    @property
    def optimizer(self) -> Optimizer:
        """Built on first use: evaluate and predict never need one."""
        if self._optimizer is None:
            self._optimizer = self.spec.make_optimizer(self.loc)
            self._optimizer.build(self.model.trainable_parameters())
        return self._optimizer

    # -- data ----------------------------------------------------------------------------------
    def prepare(
        self,
        x: Any,
        y: Any,
        sample_weight: Any = None,
        loc: Loc = (),
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Check x, y and sample_weight against the model and the loss; build metrics."""
        if self.spec.loss is None:
            raise ConfigError((*self.loc, "loss"), "is required to fit or evaluate")
        xa = to_array(x, (*loc, "x"))
        ya = to_array(y, (*loc, "y"))
        sw = None if sample_weight is None else to_array(sample_weight, (*loc, "sample_weight"))
        check_input_shape(xa, self.model.input_shape, (*loc, "x"))
        self.model.check_input(xa, (*loc, "x"))
        check_same_length([((*loc, "x"), xa), ((*loc, "y"), ya), ((*loc, "sample_weight"), sw)])
        if sw is not None:
            check_sample_weight(sw, (*loc, "sample_weight"))
        y_pred_shape = (xa.shape[0], *self._output_shape(xa)[1:])
        if self.loss is None:
            self.loss = self.spec.make_loss(
                self.loc, y_true_shape=tuple(ya.shape), y_pred_shape=y_pred_shape
            )
        self.loss.check_labels(ya, y_pred_shape, (*loc, "y"))
        self._build_metrics(ya.shape, y_pred_shape)
        return xa, ya, sw

    def _output_shape(self, x: np.ndarray) -> tuple[int, ...]:
        with torch.no_grad():
            probe = torch.as_tensor(x[:1], dtype=torch.float32, device=self.device)
            return tuple(self.model(probe, training=False).shape)

    def _build_metrics(self, y_shape: tuple[int, ...], y_pred_shape: tuple[int, ...]) -> None:
        if self.metrics is not None:
            return
        loc = self.loc

        def make(specs: Sequence[Any], key: str) -> list[metrics_mod.Metric]:
            return [
                metrics_mod.get(s, (*loc, key, i), y_true_shape=y_shape, y_pred_shape=y_pred_shape)
                for i, s in enumerate(specs)
            ]

        plain = make(self.spec.metrics, "metrics")
        weighted = make(self.spec.weighted_metrics, "weighted_metrics")
        names = {m.name for m in plain}
        for m in weighted:
            if m.name in names:  # Keras logs the weighted copy as weighted_<name>
                m.name = f"weighted_{m.name}"
        seen: set[str] = {"loss"}
        for i, m in enumerate([*plain, *weighted]):
            if m.name in seen:
                raise ConfigError((*loc, "metrics", i), f"metric name {m.name!r} is used twice")
            seen.add(m.name)
        self.metrics, self.weighted = plain, weighted

    def log_keys(self, *, validation: bool) -> set[str]:
        names = {"loss", *(m.name for m in [*(self.metrics or []), *self.weighted])}
        return names | ({f"val_{n}" for n in names} if validation else set())

    def metric_direction(self, name: str) -> str | None:
        for m in [*(self.metrics or []), *self.weighted]:
            if m.name == name:
                return m.direction
        return None

    # -- steps ---------------------------------------------------------------------------------
    def _all_metrics(self) -> list[metrics_mod.Metric]:
        return [self.loss_tracker, *(self.metrics or []), *self.weighted]

    def _reset_metrics(self) -> None:
        for m in self._all_metrics():
            m.reset_state()

    def _update(self, batch: Arrays, y_pred: torch.Tensor, loss: torch.Tensor) -> None:
        self.loss_tracker.update_state(loss, sample_weight=batch.size)
        assert batch.y is not None
        for m in self.metrics or []:
            m.update_state(batch.y, y_pred)
        for m in self.weighted:
            m.update_state(batch.y, y_pred, batch.sample_weight)

    def _logs(self) -> dict[str, float]:
        """One host sync: the current value of the loss and every metric, keys sorted."""
        ms = self._all_metrics()
        values = torch.stack([m.result().float() for m in ms]).tolist()
        return dict(sorted(zip((m.name for m in ms), values, strict=True)))

    def _forward_loss(self, batch: Arrays, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's output and the batch's total loss: the compiled loss (masked by the
        output's Keras mask, if any) plus the layers' added losses (regularization)."""
        assert self.loss is not None and batch.y is not None
        y_pred, mask = self.model.forward_with_mask(batch.x, training)
        if mask is None:
            loss = self.loss(batch.y, y_pred, batch.sample_weight)
        else:
            loss = self.loss(batch.y, y_pred, batch.sample_weight, mask=mask)
        added = self.model.added_losses()
        return y_pred, loss if added is None else loss + added

    def _train_step(self, batch: Arrays, params: list[torch.nn.Parameter]) -> None:
        y_pred, loss = self._forward_loss(batch, training=True)
        for p in params:
            p.grad = None
        loss.backward()
        self.optimizer.step()
        self.model.apply_constraints()
        self._update(batch, y_pred.detach(), loss.detach())

    def _test_loop(self, data: Arrays, batch_size: int, callbacks: Callback) -> dict[str, float]:
        """The one evaluation path: evaluate() and fit's validation both run this."""
        assert self.loss is not None
        self._reset_metrics()
        callbacks.on_test_begin()
        with torch.no_grad():
            for lo in range(0, data.size, batch_size):
                batch = data.take(slice(lo, lo + batch_size))
                y_pred, loss = self._forward_loss(batch, training=False)
                self._update(batch, y_pred, loss)
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
        xa, ya, sw = self.prepare(x, y, sample_weight, loc)
        val: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None
        if validation_data is not None:
            vx, vy, vsw = [*validation_data, None][:3]
            val = self.prepare(vx, vy, vsw, (*loc, "validation_data"))
        elif args.validation_split > 0:
            split = validation_split_at(
                xa.shape[0], args.validation_split, (*loc, "validation_split")
            )
            val = (xa[split:], ya[split:], None if sw is None else sw[split:])
            xa, ya, sw = xa[:split], ya[:split], None if sw is None else sw[:split]
        keys = self.log_keys(validation=val is not None)
        for i, cb in enumerate(callbacks):
            cb.set_trainer(self)
            cb.check(keys, (*loc, "callbacks", i))
        return FitPlan(args, (xa, ya, sw), val, list(callbacks))

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
        train = Arrays.from_numpy(*plan.train, self.device)
        val = None if plan.validation is None else Arrays.from_numpy(*plan.validation, self.device)
        history = History()
        cbs = CallbackList([*plan.callbacks, history])
        cbs.set_trainer(self)
        if not self._resumed:  # a restored RNG state continues where the checkpoint left it
            self._seed(plan.args.seed)
        self._resumed = False
        self._loop(train, val, plan.args, cbs)
        return history

    def _seed(self, seed: int | None) -> None:
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little")
        self.seed = seed
        self.generator.manual_seed(seed)

    def _loop(self, train: Arrays, val: Arrays | None, args: FitArgs, cbs: CallbackList) -> None:
        n, bs = train.size, args.batch_size
        steps = math.ceil(n / bs)
        params = self.model.trainable_parameters()
        self.model.set_generator(self.generator)
        self.stop_training = False
        logs: dict[str, float] = {}
        cbs.on_train_begin()
        try:
            for epoch in range(args.initial_epoch, args.epochs):
                self._reset_metrics()
                cbs.on_epoch_begin(epoch)
                order = (
                    torch.randperm(n, generator=self.generator, device=self.device)
                    if args.shuffle
                    else None
                )
                for step in range(steps):
                    lo, hi = step * bs, min(step * bs + bs, n)
                    batch = train.take(order[lo:hi] if order is not None else slice(lo, hi))
                    cbs.on_train_batch_begin(step)
                    self._train_step(batch, params)
                    cbs.on_train_batch_end(step, LazyLogs(self._logs))
                    if self.stop_training:
                        break
                logs = self._logs()
                if val is not None and should_validate(epoch, args.validation_freq):
                    val_logs = self._test_loop(val, args.validation_batch_size or bs, cbs)
                    logs = dict(
                        sorted({**logs, **{f"val_{k}": v for k, v in val_logs.items()}}.items())
                    )
                self.epoch = epoch
                cbs.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
            cbs.on_train_end(logs)
        finally:
            self.model.set_generator(None)

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
        xa, ya, sw = self.prepare(x, y, sample_weight, loc)
        data = Arrays.from_numpy(xa, ya, sw, self.device)
        cbs = CallbackList(callbacks)
        cbs.set_trainer(self)
        return self._test_loop(data, batch_size or DEFAULT_BATCH_SIZE, cbs)

    def predict(self, x: Any, *, batch_size: int | None = None, loc: Loc = ()) -> np.ndarray:
        return predict(self.model, x, batch_size=batch_size, device=self.device, loc=loc)

    # -- weights and state ---------------------------------------------------------------------
    def snapshot_weights(self) -> dict[str, torch.Tensor]:
        return {k: t.detach().clone() for k, t in self.model.weight_tensors().items()}

    def restore_weights(self, snapshot: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, t in self.model.weight_tensors().items():
                t.copy_(snapshot[k])

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to continue training: weights, optimizer slots, RNG state."""
        tensors = {f"model/{k}": t.detach() for k, t in self.model.weight_tensors().items()}
        opt_tensors, opt_meta = self.optimizer.state_dict()
        tensors.update({f"optimizer/{k}": t.detach() for k, t in opt_tensors.items()})
        tensors["rng/generator"] = self.generator.get_state()
        meta = {"optimizer": opt_meta, "seed": self.seed, "epoch": self.epoch}
        return tensors, meta

    def load_state(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
        self.model.load_weight_tensors(
            {k.removeprefix("model/"): t for k, t in tensors.items() if k.startswith("model/")}
        )
        opt = {
            k.removeprefix("optimizer/"): t.to(self.device)
            for k, t in tensors.items()
            if k.startswith("optimizer/")
        }
        if meta.get("optimizer") is not None:
            self.optimizer.load_state_dict(opt, meta["optimizer"])
        if "rng/generator" in tensors:
            self.generator.set_state(tensors["rng/generator"].cpu())
        self.seed = meta.get("seed")
        self._resumed = True
        self.epoch = int(meta.get("epoch", -1))
