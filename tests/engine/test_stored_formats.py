"""Checkpoints written before the typed loop state and checkpoint (tests/fixtures, made by the
earlier code) still load, read back as the same typed values and write back as the same file
contents, and resume bit for bit: a fit continued from the stored epoch-end checkpoint, or from
the stored final checkpoint's resume point, gives the epochs and weights of the uninterrupted
fit. Also: a loop state survives its checkpoint form unchanged, and a file of a newer format is
refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.callbacks import Callback
from app.engine.callbacks import get as get_callback
from app.engine.config.errors import DataError
from app.engine.models.model import Model
from app.engine.training.checkpoint import Checkpoint, CheckpointInfo, from_bytes, to_bytes
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.state import LoopState
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import sequential

FIXTURES = Path(__file__).parent.parent / "fixtures"
# The scenario the fixtures were made with.
RNG = np.random.default_rng(11)
X = RNG.normal(size=(40, 3)).astype(np.float32)
Y = (X @ np.array([[1.0], [-2.0], [0.5]], np.float32) + RNG.normal(size=(40, 1))).astype(np.float32)
MODEL = sequential([("Dense", {"units": 8, "activation": "tanh"}), ("Dropout", {"rate": 0.2}),
                    ("Dense", {"units": 1})], [None, 3])  # fmt: skip
COMPILE = {"optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.05, "use_ema": True,
           "ema_momentum": 0.9}}, "loss": "mse"}  # fmt: skip
CALLBACKS = [{"class_name": "EarlyStopping", "config": {"monitor": "loss", "patience": 3}},
             {"class_name": "ReduceLROnPlateau",
              "config": {"monitor": "loss", "patience": 1, "factor": 0.5}}]  # fmt: skip
ARGS: dict[str, Any] = dict(batch_size=8, steps_per_epoch=3, shuffle=True, seed=3)


def _trainer() -> Trainer:
    return Trainer(Model.from_config(MODEL, seed=0), CompileSpec.parse(COMPILE),
                   device=torch.device("cpu"))  # fmt: skip


def _callbacks() -> list[Callback]:
    return [get_callback(c, ("callbacks", i)) for i, c in enumerate(CALLBACKS)]


def _read(name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return from_bytes((FIXTURES / name).read_bytes())


@pytest.fixture(scope="module")
def straight() -> tuple[Trainer, dict[str, list[float]]]:
    """The uninterrupted fit, on this machine's kernels. The fixtures' first epochs were run on
    the kernels of the machine that made them: where these kernels round differently, the
    stored epoch-end weights are not this fit's, and no resume from them can be bit-exact (the
    resume tests made in-process, tests/jobs/test_resume.py, hold on every kernel)."""
    take = _Take()
    trainer = _trainer()
    history = trainer.fit(X, Y, args=FitArgs(epochs=5, **ARGS), callbacks=[*_callbacks(), take])
    stored = LoopState.from_checkpoint(*_read("checkpoint_epoch.safetensors"))
    ours = take.states[stored.epoch].weights
    if any(not torch.equal(ours[k], t) for k, t in stored.weights.items()):
        pytest.skip("this machine's kernels round the fixtures' first epochs differently")
    return trainer, history.history


def _assert_same(a: Trainer, b: Trainer) -> None:
    for wa, wb in zip(a.model.get_weights(), b.model.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)


def test_a_stored_epoch_checkpoint_reads_as_a_loop_state() -> None:
    state = LoopState.from_checkpoint(*_read("checkpoint_epoch.safetensors"))
    assert state.epoch == 2 and state.seed == 3 and state.rng is not None
    assert set(state.weights) == set(_trainer().model.weight_tensors())
    assert state.optimizer_meta is not None and state.optimizer_meta["iterations"] == 8
    assert state.batches is not None and state.batches.meta["in_pass"] is True
    assert set(state.batches.tensors) == {"data/order"}
    assert state.callbacks is not None and len(state.callbacks.entries) == 2
    assert state.stop_training is False and state.resume_weights == {}


def test_a_stored_epoch_checkpoint_resumes_bit_exactly(straight: Any) -> None:
    whole, full = straight
    resumed = _trainer()
    state = LoopState.from_checkpoint(*_read("checkpoint_epoch.safetensors"))
    tail = resumed.fit(X, Y, args=FitArgs(epochs=5, initial_epoch=3, **ARGS),
                       callbacks=_callbacks(), resume=state).history  # fmt: skip
    assert tail == {k: v[3:] for k, v in full.items()}
    _assert_same(resumed, whole)


def test_a_stored_final_checkpoint_resumes_from_its_last_epoch(straight: Any) -> None:
    """As a resumed job continues its parent's final checkpoint: from the weights of the last
    epoch's end (stored under resume/), not those the EMA overwrite left."""
    whole, full = straight
    state = LoopState.from_checkpoint(*_read("checkpoint_final.safetensors"))
    assert state.resume_weights and state.epoch == 2
    assert any(not torch.equal(state.weights[k], t) for k, t in state.resume_weights.items())
    state.stop_training = False  # as the runner does for a parent's checkpoint
    resumed = _trainer()
    tail = resumed.fit(X, Y, args=FitArgs(epochs=5, initial_epoch=3, **ARGS),
                       callbacks=_callbacks(), resume=state).history  # fmt: skip
    assert tail == {k: v[3:] for k, v in full.items()}
    _assert_same(resumed, whole)


class _Take(Callback):
    def __init__(self) -> None:
        self.states: list[LoopState] = []

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.states.append(self.trainer.loop_state().clone())


def test_a_loop_state_round_trips_through_its_checkpoint_form() -> None:
    take = _Take()
    trainer = _trainer()
    trainer.fit(X, Y, args=FitArgs(epochs=2, **ARGS), callbacks=[*_callbacks(), take])
    for state in [*take.states, trainer.loop_state()]:
        tensors, meta = state.to_checkpoint()
        again = LoopState.from_checkpoint(*from_bytes(to_bytes(tensors, meta)))
        assert again.to_checkpoint()[1] == meta
        back = again.to_checkpoint()[0]
        assert set(back) == set(tensors)
        assert all(torch.equal(back[k], t.cpu()) for k, t in tensors.items())
    assert trainer.loop_state().callbacks is None  # taken outside a fit


@pytest.mark.parametrize("name", ["checkpoint_epoch.safetensors", "checkpoint_final.safetensors"])
def test_a_stored_checkpoint_reads_typed_and_writes_back_the_same(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    ckpt = Checkpoint.from_bytes(data)
    assert ckpt.format == 1
    info = ckpt.info
    assert info.model_config == MODEL and info.compile_config is not None
    assert info.compile_config["optimizer"]["class_name"] == "Adam"
    assert info.job_id == "5b1f0c3e-2a44-4c1e-9a57-0d1f6f3e7a10"
    assert info.logs == {"loss": 1.0} and info.batch is None
    assert info.final is (name == "checkpoint_final.safetensors")
    tensors, meta = from_bytes(data)
    again_tensors, again_meta = from_bytes(ckpt.to_bytes())
    assert again_meta == meta
    assert set(again_tensors) == set(tensors)
    assert all(torch.equal(again_tensors[k], t) for k, t in tensors.items())


def test_a_checkpoint_of_a_newer_format_is_refused() -> None:
    tensors, meta = from_bytes((FIXTURES / "checkpoint_epoch.safetensors").read_bytes())
    with pytest.raises(DataError, match="newer than this version reads"):
        Checkpoint.from_bytes(to_bytes(tensors, {**meta, "format": 2}))
    del meta["format"]  # read as format 1
    assert Checkpoint.from_parts(tensors, meta).state.epoch == 2


def test_a_mid_epoch_checkpoint_keeps_its_batch() -> None:
    state = LoopState.from_checkpoint(*_read("checkpoint_epoch.safetensors"))
    ckpt = Checkpoint(state, CheckpointInfo(logs={"loss": 0.5}, batch=4))
    back = Checkpoint.from_bytes(ckpt.to_bytes())
    assert back.info == CheckpointInfo(logs={"loss": 0.5}, batch=4)
