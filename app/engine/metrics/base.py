"""The Metric base and the METRICS registry, and the running sample-weighted means Keras's
`Mean`/`MeanMetricWrapper` keep (and `LossMetric`, a mean of a loss class's values).

State is a float32 `total` and `count` on the device of the first update; updates are device ops
only (no host sync), so metrics can be updated every batch on a GPU without stalling it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch

from app.engine import losses
from app.engine.config.declared import Declared, Derived, Key, string
from app.engine.config.errors import DataError, Loc
from app.engine.config.registry import Registry
from app.engine.losses import reduction as loss_utils
from app.engine.scalars import scalar

Tensor = torch.Tensor
Shape = tuple[int, ...]
Weight = Tensor | float | int | None


def _read_dtype(config: Mapping[str, Any], key: str, loc: Loc, default: str) -> str:
    loss_utils.check_float32_dtype(config, loc)
    return default


class Metric(Declared):
    """A stateful metric: `update_state` per batch, `result` any time, `reset_state` per epoch.
    Its config is `name`, `dtype` (float32) and the keys a subclass declares; `written_when_set`
    names those Keras writes only when they are set (not None or False)."""

    default_name: ClassVar[str]
    direction: ClassVar[str | None] = None  # "up"/"down" as Keras's `_direction`, for mode="auto"
    written_when_set: ClassVar[tuple[str, ...]] = ()
    name = string(Derived(lambda cls: cls.default_name))
    dtype = Key[str](_read_dtype, "float32")

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> None:
        raise NotImplementedError

    def update_masked(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None, mask: Tensor
    ) -> None:
        """`update_state` for outputs that carry a Keras mask (True where an entry counts).
        Keras's MeanMetricWrapper metrics fold it into the sample weights (see
        MeanMetricWrapper); every other metric ignores it, as in Keras."""
        self.update_state(y_true, y_pred, sample_weight)

    def result(self) -> Tensor:
        raise NotImplementedError

    def reset_state(self) -> None:
        raise NotImplementedError

    def to(self, device: torch.device | str) -> Metric:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for key in self.written_when_set:
            if config[key] is None or config[key] is False:
                del config[key]
        return config


def _samplewise(values: Tensor, weight: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Keras's `reduce_to_samplewise_values` with mean: values (and weights) down to one per
    sample, values already multiplied by their weights."""
    if values.dtype != torch.float32:
        values = values.to(torch.float32)
    if weight is not None:
        values, weight = loss_utils.squeeze_or_expand_to_same_rank(values, weight)
        w_rank, v_rank = weight.dim(), values.dim()
        if v_rank > w_rank:
            values = torch.mean(values, dim=tuple(range(w_rank, v_rank)))
        try:
            if weight.shape != values.shape:
                weight = torch.broadcast_to(weight, values.shape)
        except RuntimeError:
            raise DataError(
                ("sample_weight",),
                f"shape {tuple(weight.shape)} does not fit metric values of shape "
                f"{tuple(values.shape)}",
            ) from None
        values = values * weight
        if w_rank > 1:
            weight = torch.mean(weight, dim=tuple(range(1, w_rank)))
    if values.dim() > 1:
        values = torch.mean(values, dim=tuple(range(1, values.dim())))
    return values, weight


class _MeanState(Metric):
    """Running `total / count` (Keras's `Mean` state), created lazily on the update's device."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._device: torch.device | None = None
        self._total: Tensor | None = None
        self._count: Tensor | None = None

    def _state(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if self._total is None or self._count is None or self._device != device:
            self.to(device)
        assert self._total is not None and self._count is not None
        return self._total, self._count

    def to(self, device: torch.device | str) -> _MeanState:
        self._device = torch.device(device)
        if self._total is None or self._count is None:
            self._total = torch.zeros((), dtype=torch.float32, device=self._device)
            self._count = torch.zeros((), dtype=torch.float32, device=self._device)
        else:
            self._total = self._total.to(self._device)
            self._count = self._count.to(self._device)
        return self

    def _accumulate(self, values: Tensor, sample_weight: Weight) -> None:
        with torch.no_grad():
            values = values.detach()
            weight = None
            if isinstance(sample_weight, Tensor):
                weight = sample_weight.detach().to(device=values.device, dtype=torch.float32)
            elif sample_weight is not None:
                # A cached device tensor, not a host-to-device copy (which would synchronise).
                weight = scalar(float(sample_weight), torch.float32, values.device)
            values, weight = _samplewise(values, weight)
            total, count = self._state(values.device)
            total.add_(torch.sum(values))
            if weight is not None:
                count.add_(torch.sum(weight))
            else:
                count.add_(float(values.shape[0]) if values.dim() >= 1 else 1.0)

    def result(self) -> Tensor:
        if self._total is None or self._count is None:
            return torch.zeros((), dtype=torch.float32, device=self._device)
        return loss_utils.divide_no_nan(self._total, self._count)

    def reset_state(self) -> None:
        if self._total is not None and self._count is not None:
            self._total.zero_()
            self._count.zero_()


class Mean(_MeanState):
    """Weighted mean of values (the trainer's loss tracker): total += sum(w * v), count += sum(w),
    or the number of values without weights."""

    default_name = "mean"

    # Keras's Mean takes values, not (y_true, y_pred); it is not offered as a compile metric.
    def update_state(  # type: ignore[override]
        self, values: Tensor, sample_weight: Weight = None
    ) -> None:
        self._accumulate(values, sample_weight)


class MeanMetricWrapper(_MeanState):
    """Keras's MeanMetricWrapper: a per-sample function averaged over all samples seen."""

    #: Keras's MeanMetricWrapper reads the mask of `y_pred`; a metric that Keras computes
    #: another way (RootMeanSquaredError is a Mean of squared errors) sets this False.
    uses_mask: ClassVar[bool] = True

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        raise NotImplementedError

    def update_masked(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None, mask: Tensor
    ) -> None:
        # Masked entries weigh 0 and the rest 1 (times their sample weights): the metric is
        # the mean over the unmasked entries.
        if self.uses_mask:
            sample_weight = loss_utils.apply_mask(sample_weight, mask, "sum", y_pred)
        self.update_state(y_true, y_pred, sample_weight)

    def update_state(
        self, y_true: Tensor, y_pred: Tensor, sample_weight: Tensor | None = None
    ) -> None:
        with torch.no_grad():
            values = self.fn(y_true.detach(), y_pred.detach())
        self._accumulate(values, sample_weight)


METRICS: Registry[Metric] = Registry("metric")


class LossMetric(MeanMetricWrapper):
    """Averages a loss class's `call` (labels cast to the output dtype, ranks aligned), as Keras's
    metrics wrap its loss functions; a metric with arguments overrides `_make_loss` to pass them
    on. The loss is made once, with the metric."""

    direction = "down"
    loss: ClassVar[Callable[[], losses.Loss]]

    def __post_init__(self) -> None:
        super().__post_init__()
        self._loss = self._make_loss()

    def _make_loss(self) -> losses.Loss:
        return type(self).loss()

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        return self._loss.call(y_true.to(y_pred.dtype), y_pred)
