"""ReduceLROnPlateau over an optimizer whose learning rate is a schedule, against Keras 3 (torch
backend): Keras's fit runs, logging the schedule's current rate, and fails at the first epoch
that calls for a reduction, because a schedule cannot be set. Here the same epochs run with the
same logs, and the fit fails at the same epoch with LearningRateNotSettable; the callbacks before
the plateau callback have seen that epoch's logs, those after it (and History) have not. Where
`min_lr` keeps the reduction from happening, both fits simply run to the end.

Measured: logs and weights within 1.2e-7 absolute, 2.3e-7 relative (asserted at rtol 1e-6)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest

from app.engine.callbacks import Callback, ReduceLROnPlateau
from app.engine.config.errors import LearningRateNotSettable
from app.engine.training.fit_args import FitArgs
from tests.support.keras_fit import keras_and_ours, sequential

RTOL, ATOL = 1e-6, 1e-6
RNG = np.random.default_rng(11)
X = RNG.normal(size=(40, 3)).astype(np.float32)
Y = (X @ np.array([[0.5], [-1.0], [2.0]], np.float32)).astype(np.float32)
MODEL = sequential([("Dense", {"units": 4, "activation": "tanh"}), ("Dense", {"units": 1})],
                   [None, 3])  # fmt: skip
DECAY = {"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
         "config": {"initial_learning_rate": 0.05, "decay_steps": 7, "decay_rate": 0.5},
         "registered_name": None}  # fmt: skip
COMPILE = {"optimizer": {"class_name": "SGD", "config": {"learning_rate": DECAY}}, "loss": "mse"}


class Epochs(Callback):
    """Records each epoch's logs as this callback receives them."""

    def __init__(self) -> None:
        self.logs: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.logs.append(dict(logs or {}))


def _keras_epochs(keras: ModuleType) -> Any:
    class KerasEpochs(keras.callbacks.Callback):  # type: ignore[name-defined]
        logs: list[dict[str, float]]

        def on_train_begin(self, logs: Any = None) -> None:
            self.logs = []

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.logs.append(dict(logs or {}))

    return KerasEpochs()


def _same_logs(ours: list[dict[str, float]], theirs: list[dict[str, float]]) -> None:
    assert [sorted(e) for e in ours] == [sorted(e) for e in theirs]
    for got, want in zip(ours, theirs, strict=True):
        for key, value in want.items():
            np.testing.assert_allclose(got[key], value, rtol=RTOL, atol=ATOL, err_msg=key)


@pytest.mark.parametrize(
    ("config", "fails_at"),
    [
        ({"monitor": "loss", "patience": 1, "min_delta": 10.0}, 1),
        ({"monitor": "loss", "patience": 3, "min_delta": 10.0, "factor": 0.5}, 3),
        ({"monitor": "loss", "patience": 0, "min_delta": 0.0}, None),  # improves every epoch
        ({"monitor": "loss", "patience": 1, "min_delta": 10.0, "min_lr": 1.0}, None),
    ],
)
def test_a_schedule_fails_the_fit_where_keras_fails_it(
    keras: ModuleType, config: dict[str, Any], fails_at: int | None
) -> None:
    km, trainer = keras_and_ours(keras, MODEL, COMPILE)
    k_before, k_after = _keras_epochs(keras), _keras_epochs(keras)
    k_plateau = keras.callbacks.ReduceLROnPlateau(**config)
    keras_error: Exception | None = None
    try:
        km.fit(X, Y, batch_size=8, epochs=6, shuffle=False, verbose=0,
               callbacks=[k_before, k_plateau, k_after])  # fmt: skip
    except TypeError as exc:
        keras_error = exc
    before, after = Epochs(), Epochs()
    plateau = ReduceLROnPlateau.from_config(config, ("callbacks", 1, "config"))
    args = FitArgs(batch_size=8, epochs=6, shuffle=False)
    if fails_at is None:
        assert keras_error is None
        history = trainer.fit(X, Y, args=args, callbacks=[before, plateau, after]).history
        _same_logs(
            after.logs,
            [
                dict(zip(km.history.history, v, strict=True))
                for v in zip(*km.history.history.values(), strict=True)
            ],
        )
        assert history["learning_rate"] == [e["learning_rate"] for e in after.logs]
    else:
        assert keras_error is not None and "not settable" in str(keras_error)
        with pytest.raises(LearningRateNotSettable) as info:
            trainer.fit(X, Y, args=args, callbacks=[before, plateau, after])
        assert info.value.epoch == fails_at
        assert info.value.loc == ("callbacks", 1)
        assert "schedule" in info.value.message and f"epoch {fails_at}" in info.value.message
        assert len(before.logs) == fails_at + 1 and len(after.logs) == fails_at
        # Keras's History stops where the callbacks after the plateau one stopped.
        assert km.history.epoch == list(range(fails_at))
    _same_logs(before.logs, k_before.logs)
    _same_logs(after.logs, k_after.logs)
    for got, want in zip(trainer.model.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
