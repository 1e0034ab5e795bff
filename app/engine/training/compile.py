"""The compile spec: Keras's `compile()` arguments, validated and resolved to engine objects."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.engine import losses, optimizers
from app.engine.config.errors import ConfigError, Loc
from app.engine.config.registry import known_keys

COMPILE_KEYS = (
    "optimizer",
    "loss",
    "loss_weights",
    "metrics",
    "weighted_metrics",
    "run_eagerly",
    "steps_per_execution",
    "jit_compile",
    "auto_scale_loss",
    "dtype_policy",
)
MAX_METRICS = 64
MAX_STEPS_PER_EXECUTION = 1 << 20
DTYPE_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
# Keras's compile defaults; to_config writes only the options that differ from them.
EXECUTION_DEFAULTS: dict[str, Any] = {
    "steps_per_execution": 1,
    "jit_compile": False,
    "run_eagerly": False,
    "auto_scale_loss": True,
    "dtype_policy": "float32",
}


def _is_object(value: Any) -> bool:
    """A single loss or metric: a name or a {class_name, config} object."""
    return isinstance(value, str) or (isinstance(value, Mapping) and "class_name" in value)


def _count_metrics(value: Any, loc: Loc, depth: int = 0) -> int:
    """Check a metrics argument's structure (a metric, a list, per-output lists or an object
    keyed by output name) and count its metrics."""
    if value is None:
        return 0
    if _is_object(value):
        return 1
    if depth < 2 and isinstance(value, list):
        return sum(_count_metrics(v, (*loc, i), depth + 1) for i, v in enumerate(value))
    if depth == 0 and isinstance(value, Mapping):
        return sum(_count_metrics(v, (*loc, str(k)), 1) for k, v in value.items())
    raise ConfigError(
        loc,
        "must be a metric name or {class_name, config} object, a list of them, one list per "
        "output, or an object keyed by output name",
    )


def _check_losses(value: Any, loc: Loc) -> None:
    if value is None or _is_object(value):
        return
    items = (
        value.items()
        if isinstance(value, Mapping)
        else enumerate(value)
        if isinstance(value, list)
        else None
    )
    if items is None:
        raise ConfigError(
            loc, "must be a loss, a list with one per output, or an object keyed by output name"
        )
    for key, item in items:
        if item is not None and not _is_object(item):
            raise ConfigError((*loc, key), "must be a loss name or {class_name, config} object")


def _check_weights(value: Any, loc: Loc) -> None:
    if isinstance(value, Mapping):
        items: list[tuple[Loc, Any]] = [((*loc, str(k)), w) for k, w in value.items()]
    elif isinstance(value, list):
        items = [((*loc, i), w) for i, w in enumerate(value)]
    else:
        items = [(loc, value)]
    for wloc, w in items:
        if w is None:
            continue
        try:
            finite = not isinstance(w, bool) and isinstance(w, int | float) and math.isfinite(w)
        except OverflowError:
            finite = False
        if not finite:
            raise ConfigError(wloc, f"must be a finite number, got {str(w)[:40]}")


def _flat_weights(value: Any) -> list[Any]:
    """Keras's tree.flatten of loss_weights: an object's values in sorted key order."""
    if isinstance(value, Mapping):
        return [value[k] for k in sorted(value)]
    return list(value) if isinstance(value, list) else [value]


def _per_output(value: Any, names: list[str], loc: Loc, what: str) -> list[tuple[Any, Loc]]:
    """Spread a per-output argument over the outputs as Keras's compile does: one value for
    every output, a list in output order, or an object keyed by output name."""
    n = len(names)
    if isinstance(value, list):
        if len(value) != n:
            raise ConfigError(
                loc, f"has {len(value)} {what} but the model has {n} output(s) {names}"
            )
        return [(v, (*loc, i)) for i, v in enumerate(value)]
    if isinstance(value, Mapping) and not _is_object(value):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ConfigError((*loc, unknown[0]), f"is not an output; the outputs are {names}")
        return [(value.get(name), (*loc, name)) for name in names]
    return [(value, loc)] * n


@dataclass
class OutputLoss:
    """One output's loss identifier (None: no loss), its weight and where it was given."""

    loss: Any
    weight: float | None
    loc: Loc


@dataclass
class CompileSpec:
    """What `compile()` was given, checked. `config` is the canonical JSON form."""

    optimizer: Any = "rmsprop"
    loss: Any = None
    loss_weights: Any = None
    metrics: Any = None
    weighted_metrics: Any = None
    steps_per_execution: int = 1
    jit_compile: bool = False  # "auto" is eager on torch, as in Keras
    run_eagerly: bool = False
    auto_scale_loss: bool = True
    dtype_policy: str = "float32"

    @classmethod
    def parse(cls, config: Any, loc: Loc = ("compile",)) -> CompileSpec:
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise ConfigError(loc, "must be an object with optimizer, loss and metrics")
        known_keys(config, COMPILE_KEYS, loc)
        _check_losses(config.get("loss"), (*loc, "loss"))
        if config.get("loss_weights") is not None:
            _check_weights(config["loss_weights"], (*loc, "loss_weights"))
        count = sum(
            _count_metrics(config.get(key), (*loc, key)) for key in ("metrics", "weighted_metrics")
        )
        if count > MAX_METRICS:
            raise ConfigError((*loc, "metrics"), f"has {count} metrics; the limit is {MAX_METRICS}")
        execution = _execution_options(config, loc)
        spec = cls(
            optimizer=config.get("optimizer") or "rmsprop",
            loss=config.get("loss"),
            loss_weights=config.get("loss_weights"),
            metrics=config.get("metrics"),
            weighted_metrics=config.get("weighted_metrics"),
            **execution,
        )
        # Resolve once now so a bad name is reported before any work starts.
        spec.make_optimizer(loc)
        for given, gloc in _leaves(spec.loss, (*loc, "loss")):
            if not needs_shapes(given):
                losses.get(given, gloc, y_true_shape=None, y_pred_shape=None)
        return spec

    def output_losses(self, names: list[str], loc: Loc = ("compile",)) -> list[OutputLoss]:
        """Each output's loss and loss weight, by Keras's rules: one loss applies to every
        output (with one weight, in whatever structure it is given); a list or an object keyed
        by output name gives one per output, and loss_weights of another structure are
        flattened (an object's values in sorted key order) and taken in output order."""
        given = _per_output(self.loss, names, (*loc, "loss"), "losses")
        wloc = (*loc, "loss_weights")
        weights = self.loss_weights
        if weights is None:
            flat: list[Any] = [None] * len(names)
        elif _is_object(self.loss) or self.loss is None:
            flat = _flat_weights(weights)
            if len(flat) != 1:
                raise ConfigError(
                    wloc,
                    f"has {len(flat)} weights for one loss; give one loss "
                    "per output to weight them apiece",
                )
            flat = flat * len(names)
        elif isinstance(weights, Mapping) and isinstance(self.loss, Mapping):
            unknown = sorted(set(weights) - set(names))
            if unknown:
                raise ConfigError((*wloc, unknown[0]), f"is not an output; they are {names}")
            flat = [weights.get(name) for name in names]
        else:
            flat = _flat_weights(weights)
            if len(flat) != len(names):
                raise ConfigError(wloc, f"has {len(flat)} weights for {len(names)} losses")
        return [
            OutputLoss(g, None if w is None else float(w), gl)
            for (g, gl), w in zip(given, flat, strict=True)
        ]

    def output_metrics(
        self, key: str, names: list[str], loc: Loc = ("compile",)
    ) -> list[list[tuple[Any, Loc]]]:
        """Each output's metrics from `metrics` or `weighted_metrics` (`key`): with one output
        every metric applies to it; with several, one entry per output (a list in output order
        or an object keyed by output name), as Keras's compile requires."""
        value = getattr(self, key)
        mloc = (*loc, key)
        if value is None:
            return [[] for _ in names]
        if len(names) == 1:
            return [_leaves(value, mloc)]
        if _is_object(value) or (isinstance(value, list) and len(value) != len(names)):
            raise ConfigError(
                mloc,
                f"the model has {len(names)} outputs {names}: give one entry per output (a list "
                "of that length, or an object keyed by output name)",
            )
        return [_leaves(v, vloc) for v, vloc in _per_output(value, names, mloc, "metric entries")]

    def make_optimizer(self, loc: Loc = ("compile",)) -> optimizers.Optimizer:
        return optimizers.get(self.optimizer, (*loc, "optimizer"))

    def to_config(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "loss": self.loss,
            "loss_weights": self.loss_weights,
            "metrics": self.metrics,
            "weighted_metrics": self.weighted_metrics,
            **{k: getattr(self, k) for k, v in EXECUTION_DEFAULTS.items() if getattr(self, k) != v},
        }


def _execution_options(config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
    """steps_per_execution, jit_compile, run_eagerly, auto_scale_loss and dtype_policy, checked
    (null means Keras's default). jit_compile "auto" resolves to eager as on Keras's torch
    backend, and run_eagerly turns jit_compile off as Keras does."""
    out = {k: v if config.get(k) is None else config[k] for k, v in EXECUTION_DEFAULTS.items()}
    spe = out["steps_per_execution"]
    if isinstance(spe, bool) or not isinstance(spe, int) or not 1 <= spe <= MAX_STEPS_PER_EXECUTION:
        raise ConfigError(
            (*loc, "steps_per_execution"),
            f"must be an integer in [1, {MAX_STEPS_PER_EXECUTION}], got {spe!r}",
        )
    if out["jit_compile"] == "auto":
        out["jit_compile"] = False
    if not isinstance(out["jit_compile"], bool):
        raise ConfigError(
            (*loc, "jit_compile"), f"must be true, false or 'auto', got {out['jit_compile']!r}"
        )
    for key in ("run_eagerly", "auto_scale_loss"):
        if not isinstance(out[key], bool):
            raise ConfigError((*loc, key), f"must be true or false, got {out[key]!r}")
    if out["dtype_policy"] not in DTYPE_POLICIES:
        raise ConfigError(
            (*loc, "dtype_policy"),
            f"must be one of {list(DTYPE_POLICIES)}, got {out['dtype_policy']!r}",
        )
    out["jit_compile"] = out["jit_compile"] and not out["run_eagerly"]
    return out


def needs_shapes(loss: Any) -> bool:
    """ "crossentropy"/"ce" are picked from the label and output shapes, at the first data."""
    return isinstance(loss, str) and loss.lower() in ("crossentropy", "ce")


def _leaves(value: Any, loc: Loc) -> list[tuple[Any, Loc]]:
    """The single objects in a (possibly nested) list or per-output object, with their locs."""
    if value is None:
        return []
    if _is_object(value):
        return [(value, loc)]
    items = value.items() if isinstance(value, Mapping) else enumerate(value)
    return [leaf for k, v in items for leaf in _leaves(v, (*loc, k))]
