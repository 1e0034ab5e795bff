"""Keras's `Normalization.adapt` for the Normalization layers of a model.

A Keras user adapts a Normalization layer on data shaped like that layer's input. Inside a model
a layer past the first ones sees what the layers before it produce, so each target layer is
adapted on what it receives when the model runs on x: inference mode, in batches, a forward
pre-hook collecting the layer's input (the rest of the model is skipped once it has it). The
collected batches are joined and given to the layer's own `adapt` (numpy's mean and population
variance, exactly Keras's numbers for array data).

Targets are adapted in graph order, so a later layer sees the outputs of earlier layers that are
already adapted, as when a Keras user adapts them one after the other. A layer called more than
once in the graph is adapted on everything it receives at all of its calls.

"Unadapted" means still at the initial state: mean all 0 and variance all 1 (the identity; see
`Normalization.is_unadapted`). A fit with `adapt` adapts only those, so weights adapted or loaded
earlier are kept.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from app.engine.arrays.checks import MAX_ELEMENTS, XY, input_tensors
from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.layers.normalization import Normalization
from app.engine.models.model import Model
from app.engine.training.fit_args import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE
from app.engine.training.inference import model_inputs


class _Collected(Exception):
    """Raised by the hook once the layer has had all its calls of a batch: the layers after it
    need not run."""


def normalization_layers(model: Model) -> list[Normalization]:
    """The model's top-level Normalization layers, in the order the graph calls them."""
    seen: dict[int, Normalization] = {}
    for node in model.graph.nodes:
        if isinstance(node.layer, Normalization):
            seen.setdefault(id(node.layer), node.layer)
    return list(seen.values())


def adapt_targets(
    model: Model, layers: Sequence[str] | None, *, only_unadapted: bool, loc: Loc = ("layers",)
) -> list[Normalization]:
    """The layers to adapt, in graph order: the named ones (each must be an adaptable
    Normalization), or every adaptable Normalization; with `only_unadapted`, those still at
    their initial state."""
    candidates = normalization_layers(model)
    if layers is None:
        targets = [layer for layer in candidates if layer.is_adaptable()]
    else:
        by_name = {layer.name: layer for layer in model.layer_list()}
        chosen: set[str] = set()
        for i, name in enumerate(layers):
            layer = by_name.get(name)
            if layer is None:
                names = [c.name for c in candidates]
                raise ConfigError(
                    (*loc, i),
                    f"the model has no layer named {name!r}; its Normalization layers are {names}",
                )
            if not isinstance(layer, Normalization):
                raise ConfigError(
                    (*loc, i),
                    f"layer {name!r} is a {layer.class_name}; only "
                    "Normalization layers can be adapted",
                )
            if not layer.is_adaptable():
                raise ConfigError(
                    (*loc, i),
                    f"layer {name!r} has mean and variance in its config; only a "
                    "Normalization without them can be adapted",
                )
            if name in chosen:
                raise ConfigError((*loc, i), f"layer {name!r} is listed twice")
            chosen.add(name)
        targets = [layer for layer in candidates if layer.name in chosen]
    if only_unadapted:
        targets = [layer for layer in targets if layer.is_unadapted()]
    return targets


def adapt_model(
    model: Model,
    x: Any,
    *,
    layers: Sequence[str] | None = None,
    only_unadapted: bool = False,
    batch_size: int | None = None,
    loc: Loc = (),
) -> list[str]:
    """Adapt the model's Normalization layers on x (one array, a list in input order or an
    object keyed by input name, as fit takes it); returns the adapted layers' names. Errors
    name the field: `x`, `layers.<i>` or `batch_size`."""
    targets = adapt_targets(model, layers, only_unadapted=only_unadapted, loc=(*loc, "layers"))
    if not targets and not only_unadapted:
        raise ConfigError(
            (*loc, "layers"),
            "the model has no Normalization layer without mean "
            "and variance in its config: there is nothing to adapt",
        )
    xs = model_inputs(model, x, loc)
    bs = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if not 1 <= bs <= MAX_BATCH_SIZE:
        raise DataError((*loc, "batch_size"), f"must be in [1, {MAX_BATCH_SIZE}]")
    return _adapt(model, xs, targets, bs, (*loc, "x"))


def adapt_before_fit(model: Model, train: XY, *, batch_size: int) -> list[str]:
    """What a fit with `adapt` does before training: every unadapted Normalization is adapted
    on the training inputs (what remains after `validation_split` took its part), as Keras
    users call `adapt` on their training data before `fit`. For Trainer users, between
    `plan_fit` and `run_fit`: `adapt_before_fit(trainer.model, plan.train,
    batch_size=plan.args.batch_size)`."""
    targets = adapt_targets(model, None, only_unadapted=True)
    return _adapt(model, train.x, targets, batch_size, ("x",))


def check_adapt_size(model: Model, n_samples: int, loc: Loc) -> None:
    """Refuse before a job starts what adapting would refuse mid-way: a layer whose inputs
    over n_samples would pass the limit on the values one layer is adapted on (shapes
    unknown here are checked while running)."""
    for layer in normalization_layers(model):
        if not layer.is_adaptable():
            continue
        per_sample = 0
        for node in model.graph.nodes:
            if node.layer is layer and isinstance(node.inputs, int):
                dims = model.graph.shapes[node.inputs][1:]
                per_sample += math.prod(d for d in dims if d is not None)
        values = n_samples * per_sample
        if values > MAX_ELEMENTS:
            raise DataError(
                loc,
                f"layer {layer.name!r} would be adapted on {values} values; "
                f"the limit is {MAX_ELEMENTS}",
            )


def _adapt(
    model: Model, xs: list[np.ndarray], targets: list[Normalization], bs: int, loc: Loc
) -> list[str]:
    if not targets:
        return []
    device = next((t.device for t in model.weight_tensors().values()), torch.device("cpu"))
    xts = input_tensors(xs, model.input_dtypes, device)
    for layer in targets:
        layer.adapt(_layer_inputs(model, layer, xts, bs, loc), loc)
    return [layer.name for layer in targets]


def _layer_inputs(
    model: Model, layer: Normalization, xts: list[torch.Tensor], bs: int, loc: Loc
) -> np.ndarray:
    """Everything `layer` receives when the model runs on xts in inference mode, batches
    joined along axis 0."""
    calls = sum(1 for node in model.graph.nodes if node.layer is layer)
    seen: list[np.ndarray] = []
    total = 0

    def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        nonlocal total
        received = args[0]
        total += received.numel()
        if total > MAX_ELEMENTS:  # checked as it grows: shapes inside may be unknown up front
            raise DataError(
                loc,
                f"layer {layer.name!r} would be adapted on more than "
                f"{MAX_ELEMENTS} values; give fewer samples",
            )
        seen.append(received.detach().cpu().numpy())
        if len(seen) % calls == 0:
            raise _Collected

    handle = layer.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            for lo in range(0, xts[0].shape[0], bs):
                part = [t[lo : lo + bs] for t in xts]
                with contextlib.suppress(_Collected):
                    model(part[0] if len(part) == 1 else part, training=False)
    finally:
        handle.remove()
    return np.concatenate(seen)
