"""What compile attaches to each model output: its loss and loss weight, its metrics, and the
names Keras logs them under.

With one output the logs are `loss` and the metric names. With several, Keras adds a
`<output>_loss` tracker per output (the unweighted loss, when more than one output has a loss)
and prefixes metric names with the output name (`cls_accuracy`); the total `loss` is
`sum(weight_i * loss_i)` plus the layers' added losses. Repeated names get Keras's `_1` suffixes
and a metric given both plain and weighted is logged as `weighted_<name>`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch

from app.engine import losses
from app.engine import metrics as metrics_mod
from app.engine.arrays.checks import for_chunks
from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.losses import reduction as loss_utils
from app.engine.training.compile import CompileSpec

Shape = tuple[int, ...]


@dataclass
class Head:
    """One output: its loss (None when it has none), weight and metrics."""

    name: str
    loss: losses.Loss | None
    weight: float | None
    tracker: metrics_mod.Mean | None = None  # `<name>_loss`, with several losses
    metrics: list[metrics_mod.Metric] = field(default_factory=list)
    weighted: list[metrics_mod.Metric] = field(default_factory=list)


def _run_checks(
    checks: Sequence[Callable[[np.ndarray, Shape, Loc], None]],
    shape: Shape,
    y: np.ndarray,
    loc: Loc,
) -> None:
    for check in checks:
        check(y, shape, loc)


class Heads:
    """Every output's loss and metrics, built once from the first labels and output shapes."""

    def __init__(
        self,
        spec: CompileSpec,
        names: list[str],
        y_shapes: Sequence[Shape | None],
        y_pred_shapes: Sequence[Shape],
        loc: Loc,
    ) -> None:
        self.heads: list[Head] = []
        plain = spec.output_metrics("metrics", names, loc)
        weighted = spec.output_metrics("weighted_metrics", names, loc)
        for i, out in enumerate(spec.output_losses(names, loc)):
            y_shape, p_shape = y_shapes[i], y_pred_shapes[i]
            loss = None
            if out.loss is not None:
                loss = losses.get(out.loss, out.loc, y_true_shape=y_shape, y_pred_shape=p_shape)
            head = Head(names[i], loss, out.weight)
            shape = y_shape or p_shape
            head.metrics = [
                metrics_mod.get(m, ml, y_true_shape=shape, y_pred_shape=p_shape)
                for m, ml in plain[i]
            ]
            head.weighted = [
                metrics_mod.get(m, ml, y_true_shape=shape, y_pred_shape=p_shape)
                for m, ml in weighted[i]
            ]
            for m, (_, ml) in zip(
                [*head.metrics, *head.weighted], [*plain[i], *weighted[i]], strict=True
            ):
                # Metrics sized by the output (top-k) refuse a narrower one before any data.
                if (check := getattr(m, "check_output", None)) is not None:
                    check(p_shape, ml)
            self.heads.append(head)
        if all(h.loss is None for h in self.heads):
            raise ConfigError((*loc, "loss"), "no output has a loss")
        if sum(h.loss is not None for h in self.heads) > 1:
            for h in self.heads:
                if h.loss is not None:
                    h.tracker = metrics_mod.Mean(name=f"{h.name}_loss")
        self._name_metrics(prefix=len(names) > 1)

    def _name_metrics(self, *, prefix: bool) -> None:
        """Keras's log names: `<output>_` prefixes with several outputs, `_1` suffixes for
        repeats, `weighted_` for a weighted metric whose name is taken."""
        seen: dict[str, int] = {"loss": 1}
        seen.update({h.tracker.name: 1 for h in self.heads if h.tracker is not None})

        def unique(name: str) -> str:
            if name not in seen:
                seen[name] = 1
                return name
            index = seen[name]
            seen[name] += 1
            return f"{name}_{index}"

        for h in self.heads:
            pre = f"{h.name}_" if prefix else ""
            for m in h.metrics:
                m.name = unique(pre + m.name)
        for h in self.heads:
            pre = f"{h.name}_" if prefix else ""
            for m in h.weighted:
                name = pre + m.name
                m.name = unique(name if name not in seen else f"{pre}weighted_{m.name}")

    def check_labels(
        self, ys: Sequence[np.ndarray | None], shapes: Sequence[Shape], loc: Loc, names_in_loc: bool
    ) -> None:
        for h, y, shape in zip(self.heads, ys, shapes, strict=True):
            yloc = (*loc, h.name) if names_in_loc else loc
            if h.loss is not None and y is None:
                raise DataError(yloc, f"output {h.name!r} has a loss and needs labels")
            if y is None:
                continue
            checks = [h.loss.check_labels] if h.loss is not None else []
            # Metrics with class ids (IoU, F-scores) check them too.
            checks += [
                c
                for m in [*h.metrics, *h.weighted]
                if (c := getattr(m, "check_labels", None)) is not None
            ]
            if isinstance(y, np.memmap):  # a stored dataset's labels: one pass, a slab at a time
                for_chunks(y, yloc, partial(_run_checks, checks, shape))
            else:
                _run_checks(checks, shape, y, yloc)

    def all_metrics(self) -> list[metrics_mod.Metric]:
        """Trackers and metrics in log order (the trainer puts the total loss first)."""
        trackers = [h.tracker for h in self.heads if h.tracker is not None]
        return [*trackers, *(m for h in self.heads for m in [*h.metrics, *h.weighted])]

    def directions(self) -> dict[str, str | None]:
        return {m.name: m.direction for h in self.heads for m in [*h.metrics, *h.weighted]}

    def losses(
        self,
        ys: Sequence[torch.Tensor | None],
        y_preds: Sequence[torch.Tensor],
        masks: Sequence[torch.Tensor | None],
        sws: Sequence[torch.Tensor | None],
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """The weighted total of the outputs' losses, and each output's unweighted loss."""
        total: torch.Tensor | None = None
        each: list[torch.Tensor | None] = []
        for h, y, p, mask, sw in zip(self.heads, ys, y_preds, masks, sws, strict=True):
            if h.loss is None or y is None:
                each.append(None)
                continue
            value = h.loss(y, p, sw) if mask is None else h.loss(y, p, sw, mask=mask)
            each.append(value)
            weighted = value if h.weight is None else value * h.weight
            total = weighted if total is None else total + weighted
        assert total is not None
        return total, each

    def update(
        self,
        ys: Sequence[torch.Tensor | None],
        y_preds: Sequence[torch.Tensor],
        masks: Sequence[torch.Tensor | None],
        sws: Sequence[torch.Tensor | None],
        each: Sequence[torch.Tensor | None],
        batch_size: int,
    ) -> None:
        for h, y, p, mask, sw, value in zip(self.heads, ys, y_preds, masks, sws, each, strict=True):
            if h.tracker is not None and value is not None:
                h.tracker.update_state(value, sample_weight=batch_size)
            if y is None:
                continue
            if mask is None:
                for m in h.metrics:
                    m.update_state(y, p)
                for m in h.weighted:
                    m.update_state(y, p, sw)
                continue
            # Keras's loss folds the mask into the sample weights in place, so the weighted
            # metrics after it see the folded weights.
            if sw is not None and h.loss is not None:
                sw = loss_utils.apply_mask(sw, mask, h.loss.reduction, p)
            for m in h.metrics:
                m.update_masked(y, p, None, mask)
            for m in h.weighted:
                m.update_masked(y, p, sw, mask)


def check_outputs(
    spec: CompileSpec, names: list[str], pred_shapes: Sequence[tuple[int | None, ...]], loc: Loc
) -> None:
    """What can be checked of a compile spec against a model before any data: one loss, loss
    weight and metric entry per output (as Heads spreads them), at least one loss when any is
    given, and every metric known. "crossentropy" and "accuracy" are picked by the label shapes
    at the first data; here they are resolved against the output shapes only to be checked."""
    outputs = spec.output_losses(names, loc)
    if spec.loss is not None and all(out.loss is None for out in outputs):
        raise ConfigError((*loc, "loss"), "no output has a loss")
    shapes = [tuple(1 if d is None else d for d in shape) for shape in pred_shapes]
    for key in ("metrics", "weighted_metrics"):
        for shape, entries in zip(shapes, spec.output_metrics(key, names, loc), strict=True):
            for metric, mloc in entries:
                metrics_mod.get(metric, mloc, y_true_shape=shape, y_pred_shape=shape)
