"""A compiled model and its steps, as in Keras's torch trainer.

`CompiledModel` holds the model, its optimizer (built on first use), loss and metrics, and the
loss scaler of mixed_float16, on one device. Its steps are public: `train_step` (one optimizer
step on a batch), `test_step` (a batch's loss and metrics in inference mode) and `predict_step`
(a batch's outputs); `reset_metrics` and `get_metrics_result` frame them. Loss and metrics
accumulate on the device; the host reads them once per epoch (or when a callback asks for batch
logs). The `Trainer` (`trainer`) builds fit, evaluate and predict on them.
"""

from __future__ import annotations

from typing import Any

import torch

from app.engine import metrics as metrics_mod
from app.engine.arrays.checks import Arrays
from app.engine.callbacks import Callback
from app.engine.config.errors import Loc
from app.engine.models.model import Model
from app.engine.optimizers import Optimizer
from app.engine.training import jit, precision
from app.engine.training.batches import BatchIterator
from app.engine.training.compile import CompileSpec
from app.engine.training.heads import Heads
from app.engine.training.inference import resolve_device


class CompiledModel:
    """A compiled model: the model, its optimizer, loss and metrics, on one device, and its
    steps."""

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

    # -- steps -------------------------------------------------------------------------------------
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
