"""ReduceLROnPlateau, TerminateOnNaN and ModelCheckpoint against Keras 3 (torch backend): the
same model from the same weights, shuffle off; the same History (with `learning_rate`), the
same final weights, the same stopping batch and the same save points."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from app.engine.callbacks import (
    Callback,
    ModelCheckpoint,
    NonFiniteLoss,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from app.engine.training.fit_args import FitArgs
from tests.support.keras_fit import assert_same_fit, keras_and_ours, measured_drift, sequential
from tests.support.tolerance import assert_within_drift

# Every fit here is held to a multiple of Keras's own drift from initial weights moved by one ulp
# (CONTRIBUTING.md): a worst-case eps bound of tens of steps would allow per mille.


RNG = np.random.default_rng(7)
X = RNG.normal(size=(60, 3)).astype(np.float32)
Y = (X @ np.array([[0.5], [-1.0], [2.0]], np.float32) + 0.1).astype(np.float32)
Y_CLASS = (X[:, 0] + 0.3 * X[:, 1] > 0).astype(np.float32)
XV, YV = X[:20] * 1.5, Y[:20]
REG = sequential([("Dense", {"units": 5, "activation": "tanh"}), ("Dense", {"units": 1})],
                 [None, 3])  # fmt: skip
LINEAR = sequential([("Dense", {"units": 1})], [None, 3])
CLS = sequential([("Dense", {"units": 4, "activation": "relu"}),
                  ("Dense", {"units": 1, "activation": "sigmoid"})], [None, 3])  # fmt: skip


def _sgd(lr: float, **more: Any) -> dict[str, Any]:
    return {"class_name": "SGD", "config": {"learning_rate": lr, **more}}


class Batches(Callback):
    """Records (epoch, batch) of every training batch, here and (as a Keras callback) there."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.seen.append((self.epoch, batch))


def _keras_batches(keras: ModuleType) -> Any:
    class KerasBatches(keras.callbacks.Callback):  # type: ignore[name-defined]
        seen: list[tuple[int, int]]

        def on_train_begin(self, logs: Any = None) -> None:
            self.seen, self.epoch = [], 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.seen.append((self.epoch, batch))

    return KerasBatches()


@pytest.mark.parametrize(
    ("kwargs", "validation"),
    [
        ({"monitor": "loss", "factor": 0.5, "patience": 1, "min_delta": 0.05}, False),
        ({"monitor": "loss", "factor": 0.3, "patience": 0, "min_delta": 0.02, "cooldown": 2,
          "min_lr": 0.01}, False),
        ({"factor": 0.5, "patience": 2, "cooldown": 1, "min_delta": 0.0}, True),
        ({"monitor": "val_mae", "factor": 0.2, "patience": 1, "mode": "max"}, True),
    ],
)  # fmt: skip
def test_reduce_lr_on_plateau_matches_keras(
    keras: ModuleType, kwargs: dict[str, Any], validation: bool
) -> None:
    compile_cfg = {"optimizer": _sgd(0.1, momentum=0.5), "loss": "mse", "metrics": ["mae"]}
    km, trainer = keras_and_ours(keras, REG, compile_cfg)
    val = (XV, YV) if validation else None

    def fit(m: Any) -> Any:
        return m.fit(X, Y, batch_size=16, epochs=12, shuffle=False, verbose=0, validation_data=val,
                     callbacks=[keras.callbacks.ReduceLROnPlateau(**kwargs)])  # fmt: skip

    kh = fit(km)
    history = trainer.fit(X, Y, args=FitArgs(batch_size=16, epochs=12, shuffle=False),
                          validation_data=val, callbacks=[ReduceLROnPlateau(**kwargs)])  # fmt: skip
    assert len(set(kh.history["learning_rate"])) > 1, "the case must reduce the rate"
    drift = measured_drift(keras, REG, compile_cfg, fit=fit, keras_history=kh.history, km=km)
    assert_same_fit(history.history, kh.history, trainer, km, drift=drift)
    assert trainer.optimizer.learning_rate == pytest.approx(
        float(km.optimizer.learning_rate), rel=0, abs=0
    )


@pytest.mark.parametrize("raise_error", [False, True])
def test_terminate_on_nan_stops_at_the_same_batch(keras: ModuleType, raise_error: bool) -> None:
    # Linear and too fast a rate: the loss grows geometrically (not chaotically, so both
    # runs stay float32-close) and overflows in the fourth epoch.
    # Seeded: where the loss overflows depends on the initial weights.
    compile_cfg = {"optimizer": _sgd(3.0), "loss": "mse"}
    km, trainer = keras_and_ours(keras, LINEAR, compile_cfg, keras_seed=3)
    kseen, seen = _keras_batches(keras), Batches()
    kcb, cb = (
        keras.callbacks.TerminateOnNaN(raise_error=raise_error),
        TerminateOnNaN(raise_error=raise_error),
    )
    args = FitArgs(batch_size=8, epochs=20, shuffle=False)
    if raise_error:
        with pytest.raises(RuntimeError, match="NaN or Inf"):
            km.fit(X, Y, batch_size=8, epochs=20, shuffle=False, verbose=0,
                   callbacks=[kcb, kseen])  # fmt: skip
        with pytest.raises(NonFiniteLoss, match="TerminateOnNaN") as info:
            trainer.fit(X, Y, args=args, callbacks=[cb, seen])
        assert isinstance(info.value, RuntimeError)
        # The batch that raised is the first one the recorder (listed after TerminateOnNaN)
        # did not see, in both.
        assert seen.seen == kseen.seen and cb.stopped_at is not None
        assert cb.stopped_at not in seen.seen
        return
    kh = km.fit(X, Y, batch_size=8, epochs=20, shuffle=False, verbose=0, callbacks=[kcb, kseen])
    history = trainer.fit(X, Y, args=args, callbacks=[cb, seen])
    assert len(kh.history["loss"]) == 4 and not np.isfinite(kh.history["loss"][-1])
    assert seen.seen[-1] == (3, 1)  # the epoch was cut short
    assert seen.seen == kseen.seen and cb.stopped_at == seen.seen[-1]

    def fit(m: Any) -> Any:
        return m.fit(X, Y, batch_size=8, epochs=20, shuffle=False, verbose=0,
                     callbacks=[keras.callbacks.TerminateOnNaN()])  # fmt: skip

    drift = measured_drift(keras, LINEAR, compile_cfg, fit=fit, keras_history=kh.history, km=km,
                           keras_seed=3)  # fmt: skip
    assert_same_fit(history.history, kh.history, trainer, km, drift=drift)


_NAME = re.compile(r"e(\d+)(?:b(\d+))?\.weights\.h5")


def _keras_saves(folder: Path) -> list[tuple[int, int | None]]:
    """(epoch, batch) of each file Keras wrote, 0-based, in save order."""
    found = []
    for p in folder.iterdir():
        m = _NAME.fullmatch(p.name)
        assert m is not None, p.name
        batch = None if m.group(2) is None else int(m.group(2)) - 1
        found.append((int(m.group(1)) - 1, batch))
    return sorted(found, key=lambda s: (s[0], -1 if s[1] is None else s[1]))


@pytest.mark.parametrize(
    ("kwargs", "validation"),
    [
        ({}, True),
        ({"save_freq": 3}, False),
        ({"save_freq": 5, "monitor": "loss"}, False),
        ({"save_best_only": True}, True),
        ({"save_best_only": True, "monitor": "val_accuracy"}, True),
        ({"save_best_only": True, "monitor": "loss", "initial_value_threshold": 0.6}, False),
        ({"save_best_only": True, "monitor": "accuracy", "mode": "min"}, False),
    ],
)  # fmt: skip
def test_model_checkpoint_saves_where_keras_saves(
    keras: ModuleType, tmp_path: Path, kwargs: dict[str, Any], validation: bool
) -> None:
    # A rate high enough that the monitored values go up and down.
    compile_cfg = {"optimizer": _sgd(1.0, momentum=0.5), "loss": "binary_crossentropy",
                   "metrics": ["accuracy"]}  # fmt: skip
    km, trainer = keras_and_ours(keras, CLS, compile_cfg)
    pattern = "e{epoch:03d}b{batch:03d}" if "save_freq" in kwargs else "e{epoch:03d}"
    val = (X[:24], Y_CLASS[:24]) if validation else None
    folders: list[Path] = []

    def fit(m: Any) -> Any:
        folders.append(tmp_path / f"run{len(folders)}")
        folders[-1].mkdir()
        kcb = keras.callbacks.ModelCheckpoint(str(folders[-1] / f"{pattern}.weights.h5"),
                                              save_weights_only=True, **kwargs)  # fmt: skip
        return m.fit(X, Y_CLASS, batch_size=8, epochs=8, shuffle=False, verbose=0,
                     validation_data=val, callbacks=[kcb])  # fmt: skip

    def last_saved(m: Any) -> dict[str, Any]:
        # The weights Keras wrote last (into a copy: `m` keeps its final weights).
        last = max(folders[-1].iterdir(), key=lambda p: p.stat().st_mtime_ns)
        saved = keras.models.clone_model(m)
        saved.load_weights(str(last))
        return {f"saved weight {i}": w for i, w in enumerate(saved.get_weights())}

    kh = fit(km)
    theirs_saved = last_saved(km)
    cb = ModelCheckpoint(filepath="best.weights.h5", save_weights_only=True, **kwargs)
    history = trainer.fit(X, Y_CLASS, args=FitArgs(batch_size=8, epochs=8, shuffle=False),
                          validation_data=val, callbacks=[cb])  # fmt: skip
    assert cb.saves == _keras_saves(folders[0])
    assert cb.saves and cb.last_saved is not None
    if kwargs.get("save_best_only"):
        assert 0 < len(cb.saves) < 8, "the case must skip some epochs"
    drift = measured_drift(keras, CLS, compile_cfg, fit=fit, keras_history=kh.history, km=km,
                           after=lambda m: theirs_saved if m is km else last_saved(m))  # fmt: skip
    assert_same_fit(history.history, kh.history, trainer, km, drift=drift)
    # The weights kept from the last save are those Keras wrote last.
    trainer.restore_weights(cb.last_saved)
    ours_saved = {f"saved weight {i}": w for i, w in enumerate(trainer.model.get_weights())}
    assert_within_drift(ours_saved, theirs_saved, {k: drift[k] for k in theirs_saved})
