"""The compile spec: Keras's `compile()` arguments, validated and resolved to engine objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.engine import losses, optimizers
from app.engine.errors import ConfigError, Loc
from app.engine.registry import known_keys

COMPILE_KEYS = (
    "optimizer", "loss", "loss_weights", "metrics", "weighted_metrics", "run_eagerly",
    "steps_per_execution", "jit_compile", "auto_scale_loss",
)  # fmt: skip
MAX_METRICS = 64


def _metric_list(value: Any, loc: Loc) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | dict):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(loc, "must be a list of metric names or {class_name, config} objects")
    if len(value) > MAX_METRICS:
        raise ConfigError(loc, f"has {len(value)} metrics; the limit is {MAX_METRICS}")
    for i, item in enumerate(value):
        if isinstance(item, list):
            raise ConfigError((*loc, i), "per-output metric lists are not supported yet")
    return list(value)


@dataclass
class CompileSpec:
    """What `compile()` was given, checked. `config` is the canonical JSON form."""

    optimizer: Any = "rmsprop"
    loss: Any = None
    metrics: list[Any] = field(default_factory=list)
    weighted_metrics: list[Any] = field(default_factory=list)

    @classmethod
    def parse(cls, config: Any, loc: Loc = ("compile",)) -> CompileSpec:
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise ConfigError(loc, "must be an object with optimizer, loss and metrics")
        known_keys(config, COMPILE_KEYS, loc)
        if config.get("loss_weights") is not None:
            raise ConfigError(
                (*loc, "loss_weights"), "is for multi-output models, not supported yet"
            )
        spe = config.get("steps_per_execution", 1)
        if spe not in (1, None):
            raise ConfigError((*loc, "steps_per_execution"), "only 1 is supported yet")
        if config.get("jit_compile") not in (None, False, "auto"):
            raise ConfigError((*loc, "jit_compile"), "only false or 'auto' (eager on torch) yet")
        for key in ("run_eagerly", "auto_scale_loss"):
            if config.get(key) is not None and not isinstance(config[key], bool):
                raise ConfigError((*loc, key), "must be true or false")
        spec = cls(
            optimizer=config.get("optimizer") or "rmsprop",
            loss=config.get("loss"),
            metrics=_metric_list(config.get("metrics"), (*loc, "metrics")),
            weighted_metrics=_metric_list(
                config.get("weighted_metrics"), (*loc, "weighted_metrics")
            ),
        )
        # Resolve once now so a bad name is reported before any work starts.
        spec.make_optimizer(loc)
        if spec.loss is not None and not spec.loss_needs_shapes:
            spec.make_loss(loc)
        return spec

    @property
    def loss_needs_shapes(self) -> bool:
        """ "crossentropy"/"ce" are picked from the label and output shapes, at the first data."""
        return isinstance(self.loss, str) and self.loss.lower() in ("crossentropy", "ce")

    def make_optimizer(self, loc: Loc = ("compile",)) -> optimizers.Optimizer:
        return optimizers.get(self.optimizer, (*loc, "optimizer"))

    def make_loss(
        self,
        loc: Loc = ("compile",),
        *,
        y_true_shape: tuple[int, ...] | None = None,
        y_pred_shape: tuple[int, ...] | None = None,
    ) -> losses.Loss:
        if isinstance(self.loss, list | dict) and not (
            isinstance(self.loss, dict) and "class_name" in self.loss
        ):
            raise ConfigError((*loc, "loss"), "per-output losses are not supported yet")
        return losses.get(
            self.loss, (*loc, "loss"), y_true_shape=y_true_shape, y_pred_shape=y_pred_shape
        )

    def to_config(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer,
            "loss": self.loss,
            "metrics": self.metrics,
            "weighted_metrics": self.weighted_metrics or None,
        }
