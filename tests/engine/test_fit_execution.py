"""How fit runs its batches: steps_per_execution, jit_compile, the batch order (shuffle="batch",
steps_per_epoch) and resuming from a checkpoint taken at an epoch boundary."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.callbacks import Callback
from app.engine.config.errors import ConfigError
from app.engine.models.model import Model
from app.engine.training import jit
from app.engine.training.batches import BatchIterator
from app.engine.training.checkpoint import from_bytes, to_bytes
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.state import LoopState
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import assert_same_fit, keras_and_ours, measured_drift, sequential

RNG = np.random.default_rng(3)
X = RNG.normal(size=(22, 4)).astype(np.float32)
Y = RNG.normal(size=(22, 1)).astype(np.float32)
MODEL = sequential([("Dense", {"units": 5, "activation": "tanh"}), ("Dropout", {"rate": 0.3}),
                    ("Dense", {"units": 1})], [None, 4])  # fmt: skip
COMPILE = {"optimizer": "adam", "loss": "mse", "metrics": ["mae"]}


class Batches(Callback):
    """Records the batch hooks' indices and the logs' keys."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.seen.append(("begin", batch))

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        assert logs is not None and sorted(logs) == ["loss", "mae"]
        self.seen.append(("end", batch))


@pytest.mark.parametrize(
    ("per_call", "steps", "n_batches"), [(3, None, 5), (2, 3, 3), (4, None, 5)]
)
def test_steps_per_execution_groups_the_batch_callbacks(
    per_call: int, steps: int | None, n_batches: int
) -> None:
    """The batch hooks fire once per group of `per_call` batches (begin: its first batch, end:
    its last), the final short group included."""
    spec = CompileSpec.parse({**COMPILE, "steps_per_execution": per_call})
    trainer = Trainer(Model.from_config(MODEL, seed=0), spec)
    probe = Batches()
    args = FitArgs(batch_size=5, epochs=2, shuffle=False, steps_per_epoch=steps)
    trainer.fit(X, Y, args=args, callbacks=[probe])
    groups = [(g, min(g + per_call, n_batches) - 1) for g in range(0, n_batches, per_call)]
    epoch = [e for first, last in groups for e in (("begin", first), ("end", last))]
    # steps_per_epoch=3 of 5 batches: the second epoch has the last 2 batches only.
    second = epoch if steps is None else [("begin", 0), ("end", 1)]
    assert probe.seen == epoch + second
    assert trainer.optimizer.iterations == n_batches + (n_batches if steps is None else 2)


def _no_dropout() -> dict[str, Any]:
    layers: list[tuple[str, dict[str, Any]]] = [
        ("Dense", {"units": 5, "activation": "tanh"}),
        ("Dense", {"units": 1}),
    ]
    return sequential(layers, [None, 4])


@pytest.mark.parametrize("per_call", [2, 3])
def test_steps_per_execution_keeps_keras_numbers(keras: ModuleType, per_call: int) -> None:
    config = _no_dropout()
    km, _ = keras_and_ours(keras, config, COMPILE)
    model = Model.from_config(config, seed=0)
    model.set_weights(km.get_weights())
    trainer = Trainer(model, CompileSpec.parse({**COMPILE, "steps_per_execution": per_call}))

    def fit(m: Any) -> Any:
        return m.fit(X, Y, batch_size=4, epochs=3, shuffle=False, verbose=0, steps_per_epoch=4)

    kh = fit(km)
    history = trainer.fit(
        X, Y, args=FitArgs(batch_size=4, epochs=3, shuffle=False, steps_per_epoch=4)
    )
    # Held to a multiple of Keras's one-ulp drift (CONTRIBUTING.md); the Keras fit is the same
    # for every `per_call`, so its drift is measured once.
    drift = measured_drift(keras, config, COMPILE, fit=fit, keras_history=kh.history, km=km,
                           key="steps_per_execution")  # fmt: skip
    assert_same_fit(history.history, kh.history, trainer, km, drift=drift)


def test_stop_training_is_seen_after_each_group() -> None:
    class Stop(Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            assert self.trainer is not None
            self.trainer.stop_training = True

    trainer = Trainer(Model.from_config(_no_dropout(), seed=0),
                      CompileSpec.parse({**COMPILE, "steps_per_execution": 3}))  # fmt: skip
    probe = Batches()
    trainer.fit(X, Y, args=FitArgs(batch_size=2, epochs=3), callbacks=[probe, Stop()])
    assert probe.seen == [("begin", 0), ("end", 2)]
    assert trainer.optimizer.iterations == 3


def test_jit_compile_matches_keras(keras: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile'd forward and loss: the same numbers as Keras's eager run. The test uses
    the aot_eager backend (traced, no code generation) to stay fast on CPU."""
    monkeypatch.setattr(jit, "backend_for", lambda device: "aot_eager")
    config = _no_dropout()
    km, _ = keras_and_ours(keras, config, COMPILE)
    model = Model.from_config(config, seed=0)
    model.set_weights(km.get_weights())
    trainer = Trainer(model, CompileSpec.parse({**COMPILE, "jit_compile": True}))
    assert trainer._train_forward != trainer._forward_loss

    def fit(m: Any) -> Any:
        return m.fit(X, Y, batch_size=8, epochs=2, shuffle=False, verbose=0)

    kh = fit(km)
    history = trainer.fit(X, Y, args=FitArgs(batch_size=8, epochs=2, shuffle=False))
    drift = measured_drift(keras, config, COMPILE, fit=fit, keras_history=kh.history, km=km)
    assert_same_fit(history.history, kh.history, trainer, km, drift=drift)


def test_jit_compile_is_refused_without_torch_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    spec = CompileSpec.parse({**COMPILE, "jit_compile": True})
    with pytest.raises(ConfigError) as info:
        Trainer(Model.from_config(_no_dropout(), seed=0), spec)
    assert info.value.loc == ("compile", "jit_compile")
    assert "torch.compile" in info.value.message


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("steps_per_execution", 0, "[1,"),
        ("steps_per_execution", 2.0, "integer"),
        ("jit_compile", "yes", "'auto'"),
        ("jit_compile", 1, "'auto'"),
        ("run_eagerly", "no", "true or false"),
        ("auto_scale_loss", 0, "true or false"),
        ("dtype_policy", "float16", "mixed_float16"),
    ],
)
def test_bad_execution_options_are_refused(key: str, value: Any, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        CompileSpec.parse({**COMPILE, key: value})
    assert info.value.loc == ("compile", key)
    assert text in info.value.message


def test_execution_options_round_trip() -> None:
    spec = CompileSpec.parse({**COMPILE, "jit_compile": "auto", "run_eagerly": True})
    assert (spec.jit_compile, spec.run_eagerly, spec.steps_per_execution) == (False, True, 1)
    assert CompileSpec.parse({**COMPILE, "jit_compile": True, "run_eagerly": True}).jit_compile is (
        False
    )  # Keras turns jit_compile off when run_eagerly is set
    config = CompileSpec.parse({**COMPILE, "steps_per_execution": 4}).to_config()
    assert config["steps_per_execution"] == 4 and "jit_compile" not in config
    assert CompileSpec.parse(config).steps_per_execution == 4


def _iterator(shuffle: bool | str, steps: int | None, seed: int = 0) -> BatchIterator:
    gen = torch.Generator().manual_seed(seed)
    return BatchIterator(10, 4, shuffle=shuffle, steps_per_epoch=steps, generator=gen,
                         device=torch.device("cpu"))  # fmt: skip


def _epochs(it: BatchIterator, n: int) -> list[list[list[int]]]:
    return [[torch.arange(10)[i].tolist() for i in it.epoch()] for _ in range(n)]


def test_shuffle_batch_permutes_within_contiguous_batches() -> None:
    epochs = _epochs(_iterator("batch", None), 4)
    for batches in epochs:
        assert [sorted(b) for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len({str(e) for e in epochs}) > 1  # a new draw each epoch


def test_steps_per_epoch_order_keras_probe() -> None:
    """Keras's probe: N=10, batch 4, 2 steps gave {[0-3],[4-7]}, {[8,9]}, ..."""
    epochs = _epochs(_iterator(False, 2), 4)
    assert epochs == [[[0, 1, 2, 3], [4, 5, 6, 7]], [[8, 9]]] * 2


def test_a_shuffled_pass_continues_across_epochs() -> None:
    """With shuffle=True one permutation serves the whole pass, over several epochs."""
    flat = [i for e in _epochs(_iterator(True, 1), 3) for b in e for i in b]
    assert sorted(flat) == list(range(10))


@pytest.mark.parametrize("shuffle", [True, "batch", False])
def test_resuming_at_an_epoch_boundary_equals_an_uninterrupted_fit(shuffle: bool | str) -> None:
    """state() at the end of epoch 3 (mid-pass: 6 batches, 4 per epoch) carries the weights,
    optimizer, RNG and the position in the current pass; a new trainer loading it finishes
    exactly as an uninterrupted one."""
    args: dict[str, Any] = dict(batch_size=4, shuffle=shuffle, steps_per_epoch=4, seed=5)

    def trainer() -> Trainer:
        return Trainer(Model.from_config(MODEL, seed=0), CompileSpec.parse(COMPILE))

    whole = trainer()
    full = whole.fit(X, Y, args=FitArgs(epochs=6, **args)).history
    first = trainer()
    head = first.fit(X, Y, args=FitArgs(epochs=3, **args)).history
    tensors, meta = from_bytes(to_bytes(*first.state()))  # as a checkpoint stores it
    assert meta["data"]["in_pass"] and meta["data"]["seen"] == 4
    resumed = trainer()
    tail = resumed.fit(
        X,
        Y,
        args=FitArgs(epochs=6, initial_epoch=3, **args),
        resume=LoopState.from_checkpoint(tensors, meta),
    ).history
    for key in full:
        assert head[key] + tail[key] == full[key], key
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_jit_compile_traces_static_shapes_whatever_ran_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker runs many fits one after the other. torch.compile remembers the shapes it has
    seen by source location, across trainers, and by default makes a dimension symbolic once it
    has seen two sizes: a convolutional model compiled after a Dense one was traced with its
    spatial dimensions symbolic, which inductor's code generator refused. The step is compiled
    for static shapes: every graph traced here, for both models and both batch sizes (each has
    a smaller last batch), has concrete shapes."""
    symbolic: list[bool] = []

    def backend(gm: Any, example_inputs: list[Any]) -> Any:
        # A symbolic dimension is passed to the graph as a SymInt input of its own.
        symbolic.append(any(isinstance(t, torch.SymInt) for t in example_inputs))
        return gm.forward

    monkeypatch.setattr(jit, "backend_for", lambda device: backend)
    conv = {"class_name": "Sequential", "config": {"name": "c", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 6, 6, 1]}},
        {"class_name": "Conv2D", "config": {"filters": 2, "kernel_size": [3, 3]}},
        {"class_name": "Flatten", "config": {}},
        {"class_name": "Dense", "config": {"units": 1, "activation": "sigmoid"}}]}}  # fmt: skip
    rng = np.random.default_rng(0)
    for config, x in [(_no_dropout(), X), (conv, rng.random((10, 6, 6, 1), dtype=np.float32))]:
        y = rng.integers(0, 2, (len(x), 1)).astype(np.float32)
        trainer = Trainer(Model.from_config(config, seed=0),
                          CompileSpec.parse({**COMPILE, "jit_compile": True}))  # fmt: skip
        history = trainer.fit(x, y, args=FitArgs(batch_size=4, epochs=1, shuffle=False))
        assert np.isfinite(history.history["loss"]).all()
    assert symbolic == [False] * 4
