"""The Optimizer base for Keras 3 optimizers on torch: hyperparameters and config parsing, the
learning rate (a constant or a schedule), slots (one zeroed tensor per parameter and slot name),
gradient clipping, decoupled weight decay, step bookkeeping and the state saved in checkpoints. The
update rules are subclasses in the family modules of `app.engine.optimizers`; loss scaling, gradient
accumulation and the EMA of the weights are `app.engine.optimizers.options`.

A step is Keras's `apply`: drop parameters without a gradient, unscale, accumulate (the step may
end here), clip, decoupled weight decay, the update rule, the EMA, then the raw step count
`steps += 1` and the schedule's rate for the next step. Subclasses read `self.learning_rate` (the
rate for this step) and `self.iterations` (updates applied before this one, as Keras's bias
corrections count them). Scalars that Keras keeps as float32 tensors are 0-d tensors on the
parameters' device, cached by `app.engine.scalars` or made with `torch.full` (a fill kernel, not
a host copy), and a schedule is evaluated on the CPU, so a step never synchronises with the GPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from app.engine.config.declared import Declared, Derived, Key, number_or_none
from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_float, get_str
from app.engine.config.registry import to_snake_case
from app.engine.optimizers import schedules
from app.engine.optimizers.options import Options
from app.engine.optimizers.schedules import LearningRateSchedule
from app.engine.scalars import scalar_like

Tensor = torch.Tensor
Slots = dict[str, list[Tensor]]

_CLIP_KEYS = ("clipnorm", "global_clipnorm", "clipvalue")


def _read_name(config: Mapping[str, Any], key: str, loc: Loc, default: str) -> str:
    name: str | None = get_str(config, key, loc, None)
    return default if name is None else name


def _clip() -> Key[float | None]:
    return number_or_none(min_value=0.0)


class Optimizer(Declared):
    """Hyperparameters, slots (one zeroed tensor per parameter and slot name), clipping, weight
    decay and step bookkeeping around the update rule a subclass supplies in `_update`.

    Its config: `name`, `learning_rate` (a number or a schedule), the keys declared here, the
    options' keys (`Options`), then a subclass's own declared keys (its hyperparameters)."""

    default_learning_rate: ClassVar[float]
    name = Key[str](_read_name, Derived(lambda cls: to_snake_case(cls.__name__)))
    weight_decay = number_or_none(min_value=0.0)
    clipnorm = _clip()
    global_clipnorm = _clip()
    clipvalue = _clip()

    def __init__(
        self,
        learning_rate: float | LearningRateSchedule | None = None,
        *,
        options: Options | None = None,
        **values: Any,
    ) -> None:
        if values.get("name", "") is None:
            del values["name"]
        super().__init__(**values)
        self.options = options or Options()
        self.steps = 0  # Keras's raw `_iterations`: every apply, updating or accumulating
        # A LearningRateSchedule evaluated at `steps`, or None for a constant rate.
        self.schedule: LearningRateSchedule | None = None
        if isinstance(learning_rate, LearningRateSchedule):
            self.schedule = learning_rate
            self._learning_rate = learning_rate(0)
        else:
            self.learning_rate = (
                self.default_learning_rate if learning_rate is None else learning_rate
            )
        self._params: list[torch.nn.Parameter] | None = None
        self._slots: Slots = {}

    @property
    def iterations(self) -> int:
        """Updates applied (Keras's `iterations`; below `steps` with gradient accumulation)."""
        return self.options.updates_per(self.steps)

    @property
    def learning_rate(self) -> float:
        """The rate of the coming step (a schedule's value at `steps`), rounded to float32."""
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if self.schedule is not None:
            raise TypeError(
                "the optimizer's learning_rate is a schedule, so it cannot be set; give a "
                "number as learning_rate to have a settable rate"
            )
        if isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ValueError(f"learning rate must be a finite number >= 0, got {value!r}")
        # Keras keeps the rate in a float32 variable: round the same way.
        self._learning_rate = float(np.float32(value))

    def slot_names(self) -> tuple[str, ...]:
        return ()

    def build(self, params: list[torch.nn.Parameter]) -> None:
        """Create zeroed slots beside each parameter. Building again with the same parameters
        keeps the state, as Keras's optimizer does across fit calls."""
        params = list(params)
        if self._params is not None:
            same = len(params) == len(self._params) and all(
                a is b for a, b in zip(params, self._params, strict=True)
            )
            if not same:
                raise ValueError("the optimizer is already built for other parameters")
            return
        self._params = params
        self._slots = {
            name: [torch.zeros_like(p, requires_grad=False) for p in params]
            for name in self.slot_names()
        }
        self.options.build(params)

    def step(self) -> None:
        if self._params is None:
            raise RuntimeError("optimizer.step() before build()")
        if not self._params:
            return
        index = [i for i, p in enumerate(self._params) if p.grad is not None]
        if not index:
            raise ValueError("no gradients provided for any parameter")
        with torch.no_grad():
            params: list[Tensor] = [self._params[i] for i in index]
            grads = self.options.unscale([p.grad for p in params if p.grad is not None])
            mean = self.options.accumulate(grads, index, self.steps)
            if mean is not None:
                self._apply(self._clip(mean), params, index)
            self.options.update_average(list(self._params), self.iterations)
        self.steps += 1
        if self.schedule is not None:
            self._learning_rate = self.schedule(self.steps)

    def _apply(self, grads: list[Tensor], params: list[Tensor], index: list[int]) -> None:
        """Weight decay and the update rule, for the parameters at `index`."""
        if self.weight_decay is not None:
            lr = scalar_like(self.learning_rate, params[0])
            torch._foreach_mul_(params, 1 - scalar_like(self.weight_decay, params[0]) * lr)
        slots = self._slots
        if self._params is not None and len(index) < len(self._params):
            slots = {k: [s[i] for i in index] for k, s in slots.items()}
        self._update(grads, params, slots)

    def _update(self, grads: list[Tensor], params: list[Tensor], slots: Slots) -> None:
        raise NotImplementedError

    def scale_loss(self, loss: Tensor) -> Tensor:
        """The loss to differentiate (Keras multiplies it by `loss_scale_factor`)."""
        scale = self.options.loss_scale_factor
        return loss if scale is None else loss * scale

    def finalize_variable_values(self) -> None:
        """Called by fit after the last epoch, before `on_train_end`: with `use_ema`, the
        weights take their moving averages (as in Keras, whatever `ema_overwrite_frequency`)."""
        if self._params is not None:
            with torch.no_grad():
                self.options.finalize(list(self._params))

    def _clip(self, grads: list[Tensor]) -> list[Tensor]:
        # Keras's order of checks; 0 means no clipping.
        if self.clipnorm:
            return [self._clip_by_norm(g, self.clipnorm) for g in grads]
        if self.global_clipnorm:
            norm = torch.sqrt(torch.sum(torch.stack([torch.sum(torch.square(g)) for g in grads])))
            clip = self.global_clipnorm
            scale = clip * torch.minimum(1.0 / norm, scalar_like(1.0 / clip, norm))
            # A non-finite norm turns every gradient into NaN, as in Keras.
            scale = scale + (norm - norm)
            return [g * scale for g in grads]
        if self.clipvalue:
            return [torch.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    @staticmethod
    def _clip_by_norm(g: Tensor, clipnorm: float) -> Tensor:
        l2sum = torch.sum(torch.square(g))
        positive = l2sum > 0
        l2norm = torch.where(positive, torch.sqrt(torch.where(positive, l2sum, 1.0)), l2sum)
        limit = scalar_like(clipnorm, g)
        return (g * limit) / torch.maximum(l2norm, limit)

    def _named_slots(self) -> dict[str, Tensor]:
        prefix = type(self).__name__.lower()
        named = {**self._slots, **self.options.named_tensors()}
        return {
            f"{prefix}.{name}.{i}": t for name, slot in named.items() for i, t in enumerate(slot)
        }

    def state_dict(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Copies of the slots (and of the EMA and accumulated gradients), named
        `<optimizer>.<slot>.<parameter index>`, and JSON meta."""
        tensors = {key: t.detach().clone() for key, t in self._named_slots().items()}
        meta = {
            "class_name": type(self).__name__,
            "iterations": self.iterations,
            "steps": self.steps,
            # A schedule's rate can grow past float32 (Keras trains on with it); JSON has no
            # infinity, so it is written as a string. Loading recomputes it from `steps`.
            "learning_rate": lr if math.isfinite(lr := self.learning_rate) else str(lr),
            "config": self.get_config(),
        }
        return tensors, meta

    def load_state_dict(self, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
        """Restore a `state_dict` into this built optimizer (copied onto its slots' device);
        the learning rate comes back too, since callbacks may have changed it (a schedule's
        rate follows from the restored step count)."""
        if self._params is None:
            raise RuntimeError("build the optimizer before loading its state")
        if meta.get("class_name") != type(self).__name__:
            raise ValueError(f"state of {meta.get('class_name')!r}, not {type(self).__name__}")
        slots = self._named_slots()
        if set(tensors) != set(slots):
            raise ValueError(f"optimizer state has {sorted(tensors)}, expected {sorted(slots)}")
        for key, slot in slots.items():
            if tensors[key].shape != slot.shape:
                raise ValueError(f"{key} has shape {tuple(tensors[key].shape)}, not {slot.shape}")
        with torch.no_grad():
            for key, slot in slots.items():
                slot.copy_(tensors[key])
        self.steps = int(meta.get("steps", meta["iterations"]))
        if self.schedule is not None:
            self._learning_rate = self.schedule(self.steps)
        else:
            self.learning_rate = float(meta["learning_rate"])

    @classmethod
    def hyperparameters(cls) -> dict[str, Any]:
        """A subclass's own keys (its update rule's), with their defaults."""
        return {
            name: key.default
            for name, key in cls.declared_keys.items()
            if name not in Optimizer.declared_keys
        }

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        schedule = self.schedule
        head = {
            "name": config.pop("name"),
            "learning_rate": self.learning_rate
            if schedule is None
            else schedules.serialize(schedule),
        }
        common = {key: config.pop(key) for key in ("weight_decay", *_CLIP_KEYS)}
        return {**head, **common, **self.options.get_config(), **config}

    @classmethod
    def config_keys(cls) -> tuple[str, ...]:
        return (*cls.declared_keys, "learning_rate", *Options.declared_keys)

    @classmethod
    def read_values(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        lr: float | LearningRateSchedule
        if isinstance(config.get("learning_rate"), Mapping):
            lr = schedules.get(config["learning_rate"], (*loc, "learning_rate"))
        else:
            # Keras rejects a Python int here, but JSON clients cannot always choose to send 1.0.
            lr = get_float(
                config,
                "learning_rate",
                loc,
                cls.default_learning_rate,
                min_value=0,
                min_exclusive=True,
                max_value=schedules.FLOAT32_MAX,
            )
        options = Options(**Options.read_values(config, loc))
        return {"learning_rate": lr, "options": options, **super().read_values(config, loc)}

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        given = [key for key in _CLIP_KEYS if values[key] is not None]
        if len(given) > 1:
            raise ConfigError((*loc, given[1]), f"only one of {', '.join(_CLIP_KEYS)} can be set")


def _read_fraction(config: Mapping[str, Any], key: str, loc: Loc, default: float) -> float:
    value = float(get_float(config, key, loc, default, min_value=0.0, max_value=1.0))
    if value == 1.0:
        raise ConfigError((*loc, key), "must be < 1, got 1.0")
    return value


def fraction(default: float) -> Key[float]:
    """A number in [0, 1)."""
    return Key(_read_fraction, default)
