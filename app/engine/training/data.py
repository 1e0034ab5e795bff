"""Checking data against a compiled model: `DataChecks.prepare` checks x, y and sample_weight
against the model, the losses and each other, and builds the losses and metrics at the first data
(some are picked by the label shapes); `prepare_arrays` does the same for arrays already split per
input and output; `to_device` puts checked arrays on the trainer's device; `log_keys` are the
names a fit logs. `Trainer.plan_fit` checks a fit's data with them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

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
)
from app.engine.arrays.host_batches import HostBatches, is_mapped
from app.engine.config.errors import ConfigError, Loc
from app.engine.training.heads import Heads
from app.engine.training.steps import CompiledModel


class DataChecks(CompiledModel):
    """A compiled model that checks data against itself."""

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
        groups = (
            ("x", xs, model.input_names),
            ("y", ys, model.output_names),
            ("sample_weight", sws, model.output_names),
        )
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
        return [
            (tuple(o.shape), None if m is None else tuple(m.shape))
            for o, m in zip(outs, masks, strict=True)
        ]

    def log_keys(self, *, validation: bool) -> set[str]:
        names = {m.name for m in self._all_metrics()}
        return names | ({f"val_{n}" for n in names} if validation else set())

    def metric_direction(self, name: str) -> str | None:
        return None if self.heads is None else self.heads.directions().get(name)
