"""Callback state across a resume: a fit checkpointed at the end of epoch k and continued by a
fresh trainer (fresh callbacks) gives the uninterrupted fit's logs, stopping epoch, saves and
final weights, bit for bit, at every k (during EarlyStopping's wait, during
ReduceLROnPlateau's wait and cooldown, at the stopping epoch itself); a checkpoint without
callback state, or for other callbacks, restores nothing and still resumes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from app.engine.callbacks import (
    Callback,
    EarlyStopping,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
    ThresholdStopping,
)
from app.engine.callbacks import state as callback_state
from app.engine.models.model import Model
from app.engine.training.checkpoint import from_bytes, to_bytes
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.state import LoopState
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import sequential

RNG = np.random.default_rng(7)
W = np.array([[1.0], [-2.0], [0.5]], np.float32)
X = RNG.normal(size=(40, 3)).astype(np.float32)
Y = (X @ W + RNG.normal(size=(40, 1))).astype(np.float32)
VX = RNG.normal(size=(16, 3)).astype(np.float32)
VY = (VX @ W + RNG.normal(size=(16, 1))).astype(np.float32)
MODEL = sequential([("Dense", {"units": 8, "activation": "tanh"}), ("Dropout", {"rate": 0.2}),
                    ("Dense", {"units": 1})], [None, 3])  # fmt: skip
# A large rate makes val_loss wander: EarlyStopping waits, ReduceLROnPlateau reduces and cools.
COMPILE = {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.2, "momentum": 0.5}},
           "loss": "mse"}  # fmt: skip
ARGS: dict[str, Any] = dict(epochs=40, batch_size=8, seed=3)  # 5 batches an epoch, shuffled


def _callbacks() -> list[Callback]:
    return [
        EarlyStopping(monitor="val_loss", patience=6, restore_best_weights=True),
        ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=1, min_delta=0.0),
        ModelCheckpoint(monitor="val_loss", save_best_only=True),
        # Every 3 batches, counted across epochs (and so across the resume).
        ModelCheckpoint(monitor="loss", save_freq=3),
        ThresholdStopping(monitor="val_loss", threshold=-1.0),  # never reached
        TerminateOnNaN(),
    ]


class Capture(Callback):
    """Last in the list: takes the checkpoint (through its bytes) at every epoch end, after the
    other callbacks' on_epoch_end, as the job's CheckpointSaver does; records their counters too."""

    def __init__(self) -> None:
        self.states: dict[int, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}
        self.counters: list[tuple[int, int, int]] = []

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.states[epoch] = from_bytes(to_bytes(*self.trainer.state()))
        es, rl = self.trainer.callbacks[0], self.trainer.callbacks[1]  # type: ignore[index]
        assert isinstance(es, EarlyStopping) and isinstance(rl, ReduceLROnPlateau)
        self.counters.append((es.wait, rl.wait, rl.cooldown_counter))


def _trainer() -> Trainer:
    return Trainer(Model.from_config(MODEL, seed=0), CompileSpec.parse(COMPILE))


def _fit(trainer: Trainer, cbs: list[Callback], resume: LoopState | None = None,
         **args: Any) -> Any:  # fmt: skip
    return trainer.fit(X, Y, validation_data=(VX, VY), args=FitArgs(**{**ARGS, **args}),
                       callbacks=cbs, resume=resume)  # fmt: skip


@pytest.fixture(scope="module")
def straight() -> tuple[Trainer, list[Callback], Any, Capture]:
    trainer, cbs, capture = _trainer(), _callbacks(), Capture()
    history = _fit(trainer, [*cbs, capture])
    return trainer, cbs, history, capture


def _resume(
    state: tuple[dict[str, torch.Tensor], dict[str, Any]], k: int, cbs: list[Callback]
) -> tuple[Trainer, Any]:
    trainer = _trainer()
    return trainer, _fit(trainer, cbs, LoopState.from_checkpoint(*state), initial_epoch=k + 1)


def _assert_same_weights(a: Trainer, b: Trainer) -> None:
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_the_uninterrupted_fit_covers_the_interesting_points(straight: Any) -> None:
    _, cbs, history, capture = straight
    es, rl = cbs[0], cbs[1]
    last = history.epoch[-1]
    assert es.stopped_epoch == last < ARGS["epochs"] - 1 and es.best_epoch < last
    assert any(wait > 0 for wait, _, _ in capture.counters)  # EarlyStopping waiting
    assert any(wait > 0 for _, wait, _ in capture.counters)  # ReduceLROnPlateau waiting
    assert any(cool > 0 for _, _, cool in capture.counters)  # ReduceLROnPlateau cooling down
    assert len(set(history.history["learning_rate"])) >= 3  # reduced twice
    assert len(cbs[2].saves) >= 2 and rl.best is not None
    assert len(cbs[3].saves) == len(history.epoch) * 5 // 3  # the count runs across epochs


def test_resuming_at_every_epoch_equals_the_uninterrupted_fit(straight: Any) -> None:
    whole, cbs, full, capture = straight
    last = full.epoch[-1]
    for k in range(last + 1):  # k == last: the checkpoint of the epoch that stopped the fit
        fresh = _callbacks()
        resumed, tail = _resume(capture.states[k], k, [*fresh, Capture()])
        assert tail.epoch == list(range(k + 1, last + 1)), k
        assert set(tail.history) <= set(full.history)
        for key, values in full.history.items():
            assert values[: k + 1] + tail.history.get(key, []) == values, (k, key)
        es, rl, mc, mcb, ts, nan = fresh
        assert es.stopped_epoch == cbs[0].stopped_epoch and es.best_epoch == cbs[0].best_epoch
        assert (es.wait, es.best) == (cbs[0].wait, cbs[0].best), k
        assert (rl.best, rl.wait, rl.cooldown_counter) == (
            cbs[1].best, cbs[1].wait, cbs[1].cooldown_counter,
        ), k  # fmt: skip
        assert resumed.optimizer.learning_rate == whole.optimizer.learning_rate
        assert mc.best == cbs[2].best and mc.saves == [s for s in cbs[2].saves if s[0] > k]
        assert mcb.saves == [s for s in cbs[3].saves if s[0] > k], k
        assert (ts.stopped_epoch, nan.stopped_at) == (None, None)
        for saved, expected in ((mc.last_saved, cbs[2].last_saved),
                                (mcb.last_saved, cbs[3].last_saved)):  # fmt: skip
            assert saved is not None and expected is not None
            for name, t in expected.items():
                assert torch.equal(saved[name], t), (k, name)
        _assert_same_weights(resumed, whole)  # the best epoch's weights, restored at the end


def test_the_checkpoint_holds_each_stateful_callback(straight: Any) -> None:
    _, _, _, capture = straight
    tensors, meta = capture.states[3]
    assert meta["stop_training"] is False
    assert [(e["index"], e["class_name"]) for e in meta["callbacks"]] == [
        (0, "EarlyStopping"), (1, "ReduceLROnPlateau"), (2, "ModelCheckpoint"),
        (3, "ModelCheckpoint"), (4, "ThresholdStopping"), (5, "TerminateOnNaN"),
    ]  # fmt: skip
    assert set(meta["callbacks"][0]["state"]) == {"wait", "best", "best_epoch", "stopped_epoch"}
    best = {k for k in tensors if k.startswith("callbacks/0/best_weights/")}
    assert best == {f"callbacks/0/best_weights/{k}" for k in _trainer().model.weight_tensors()}
    assert meta["callbacks"][0]["state"]["best_epoch"] <= 3
    _, last_meta = capture.states[max(capture.states)]
    assert last_meta["stop_training"] is True


def test_a_checkpoint_without_callback_state_still_resumes_with_fresh_callbacks(
    straight: Any,
) -> None:
    """Checkpoints written before callback state was kept: the weights, optimizer and RNG come
    back; the callbacks start afresh (so the fit no longer stops where it did)."""
    _, _, full, capture = straight
    k = 5
    tensors, meta = capture.states[k]
    old_meta = {key: v for key, v in meta.items() if key not in ("callbacks", "stop_training")}
    old_tensors = {key: t for key, t in tensors.items() if not key.startswith("callbacks/")}
    fresh = _callbacks()
    _, tail = _resume((old_tensors, old_meta), k, fresh)
    es = fresh[0]
    assert tail.history["loss"][0] == full.history["loss"][k + 1]  # same weights, RNG, data
    assert es.best_epoch > k and tail.epoch[-1] != full.epoch[-1]


def test_callbacks_of_another_class_or_config_start_afresh(straight: Any) -> None:
    _, cbs, _, capture = straight
    k = 5
    other = [
        EarlyStopping(monitor="val_loss", patience=7, restore_best_weights=True),  # config
        ModelCheckpoint(monitor="val_loss", save_best_only=True),  # class at index 1
    ]
    saved = LoopState.from_checkpoint(*capture.states[k]).callbacks
    assert saved is not None
    tensors, entries = saved.tensors, saved.entries
    restored = callback_state.restore(other, tensors, entries)
    assert restored == [] and other[0].best is None and other[1].best is None  # type: ignore[attr-defined]
    same = _callbacks()
    assert callback_state.restore(same, tensors, entries) == [0, 1, 2, 3, 4, 5]
    assert same[0].best == capture.states[k][1]["callbacks"][0]["state"]["best"]  # type: ignore[attr-defined]
    assert callback_state.restore(same[:2], tensors, entries) == [0, 1]  # a shorter list
    assert cbs[0].best is not None


def test_non_finite_values_survive_the_checkpoint_json() -> None:
    es = EarlyStopping(monitor="loss")
    for value in (float("nan"), float("inf"), float("-inf"), None, 0.25):
        es.best = value
        _, state = es.get_state()
        _, meta = from_bytes(to_bytes({"x": torch.zeros(1)}, {"s": state}))
        es.set_state({}, meta["s"])
        assert (
            (es.best is None)
            if value is None
            else (
                np.isnan(es.best) if np.isnan(value) else es.best == value  # type: ignore[arg-type]
            )
        )


class MidEpochState(Callback):
    """Takes the trainer's state after a batch, as a mid-epoch ModelCheckpoint save does."""

    def __init__(self) -> None:
        self.meta: list[dict[str, Any]] = []

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if batch == 2:
            self.meta.append(from_bytes(to_bytes(*self.trainer.state()))[1])


def test_mid_epoch_checkpoints_carry_callback_state_and_do_not_disturb_the_fit(
    straight: Any,
) -> None:
    whole, _, full, _ = straight
    probe = MidEpochState()
    trainer = _trainer()
    history = _fit(trainer, [*_callbacks(), probe])
    assert history.history == full.history
    _assert_same_weights(trainer, whole)
    assert len(probe.meta) == len(full.epoch)
    assert all(len(m["callbacks"]) == 6 for m in probe.meta)
    # Taken right after the save every 3 batches reset the count.
    assert {m["callbacks"][3]["state"]["last_batch"] for m in probe.meta} == {2}


def test_a_state_taken_outside_a_fit_has_no_callback_section(straight: Any) -> None:
    whole, _, _, _ = straight
    _, meta = whole.state()
    assert "callbacks" not in meta and "stop_training" not in meta
