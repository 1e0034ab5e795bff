"""The declarative callbacks' configs: each round-trips, bad values are ConfigErrors naming the
field, plan-time refusals (a monitor the fit never logs), a schedule under ReduceLROnPlateau
accepted at plan time (the fit fails only at a reduction, as Keras's); and the throttled
progress reporter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.engine.callbacks import CALLBACKS, ModelCheckpoint, ProgressReporter, get
from app.engine.config.errors import ConfigError
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import sequential

CONFIGS: dict[str, dict[str, Any]] = {
    "ReduceLROnPlateau": {"monitor": "loss", "factor": 0.5, "patience": 3, "mode": "min",
                          "min_delta": 0.01, "cooldown": 2, "min_lr": 1e-5},
    "TerminateOnNaN": {"raise_error": True},
    "ModelCheckpoint": {"filepath": "m.weights.h5", "monitor": "loss", "save_best_only": True,
                        "save_weights_only": True, "mode": "min", "save_freq": 4,
                        "initial_value_threshold": 2.0},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_round_trips(name: str) -> None:
    cb = get({"class_name": name, "config": CONFIGS[name]}, ("callbacks", 0))
    assert cb.get_config() == CONFIGS[name]
    again = get({"class_name": name, "config": cb.get_config()}, ("callbacks", 0))
    assert again.get_config() == cb.get_config()


def test_defaults_are_keras_defaults() -> None:
    assert get("ReduceLROnPlateau", ()).get_config() == {
        "monitor": "val_loss", "factor": 0.1, "patience": 10, "mode": "auto",
        "min_delta": 1e-4, "cooldown": 0, "min_lr": 0.0,
    }  # fmt: skip
    assert get("ModelCheckpoint", ()).get_config() == {
        "filepath": None, "monitor": "val_loss", "save_best_only": False,
        "save_weights_only": False, "mode": "auto", "save_freq": "epoch",
        "initial_value_threshold": None,
    }  # fmt: skip
    assert get("TerminateOnNaN", ()).get_config() == {"raise_error": False}
    saves_every_3 = get({"class_name": "ModelCheckpoint", "config": {"save_freq": 3.0}}, ())
    assert saves_every_3.get_config()["save_freq"] == 3
    assert {"ReduceLROnPlateau", "TerminateOnNaN", "ModelCheckpoint"} <= set(CALLBACKS.names())


@pytest.mark.parametrize(
    ("name", "config", "field", "text"),
    [
        ("ReduceLROnPlateau", {"factor": 1.0}, "factor", "< 1.0"),
        ("ReduceLROnPlateau", {"factor": 2}, "factor", "< 1.0"),
        ("ReduceLROnPlateau", {"patience": -1}, "patience", ">= 0"),
        ("ReduceLROnPlateau", {"cooldown": 1.5}, "cooldown", "integer"),
        ("ReduceLROnPlateau", {"min_lr": -1.0}, "min_lr", ">= 0"),
        ("ReduceLROnPlateau", {"mode": "up"}, "mode", "one of"),
        ("ReduceLROnPlateau", {"epsilon": 0.1}, "epsilon", "unknown argument"),
        ("TerminateOnNaN", {"raise_error": "yes"}, "raise_error", "true or false"),
        ("ModelCheckpoint", {"save_freq": "batch"}, "save_freq", "'epoch' or a number"),
        ("ModelCheckpoint", {"save_freq": 0}, "save_freq", ">= 1"),
        ("ModelCheckpoint", {"filepath": "model.pt"}, "filepath", ".keras"),
        ("ModelCheckpoint", {"filepath": "m.keras", "save_weights_only": True}, "filepath",
         ".weights.h5"),
        ("ModelCheckpoint", {"filepath": 3}, "filepath", "string"),
        ("ModelCheckpoint", {"initial_value_threshold": "x"}, "initial_value_threshold",
         "number"),
    ],
)  # fmt: skip
def test_bad_values_name_their_field(
    name: str, config: dict[str, Any], field: str, text: str
) -> None:
    with pytest.raises(ConfigError) as info:
        get({"class_name": name, "config": config}, ("callbacks", 2))
    assert info.value.loc == ("callbacks", 2, "config", field)
    assert text in info.value.message


def _trainer(optimizer: Any = "sgd") -> Trainer:
    config = sequential([("Dense", {"units": 1})], [None, 2])
    spec = CompileSpec.parse({"optimizer": optimizer, "loss": "mse", "metrics": ["mae"]})
    return Trainer(Model.from_config(config, seed=0), spec, device=None)


X = np.zeros((10, 2), np.float32)
Y = np.zeros((10, 1), np.float32)


@pytest.mark.parametrize(
    ("name", "config", "field", "text"),
    [
        ("ReduceLROnPlateau", {}, "monitor", "not among the logs"),
        ("ModelCheckpoint", {"save_best_only": True}, "monitor", "epoch logs"),
        ("ModelCheckpoint", {"save_best_only": True, "monitor": "val_mae", "save_freq": 2},
         "monitor", "batch logs"),
        ("ModelCheckpoint", {"monitor": "nope"}, "mode", "cannot tell"),
    ],
)  # fmt: skip
def test_plan_refuses_what_the_fit_cannot_honour(
    name: str, config: dict[str, Any], field: str, text: str
) -> None:
    cb = get({"class_name": name, "config": config}, ("callbacks", 0))
    with pytest.raises(ConfigError) as info:
        _trainer().plan_fit(X, Y, validation_data=(X, Y) if "val_" in str(config) else None,
                            callbacks=[cb])  # fmt: skip
    assert info.value.loc == ("callbacks", 0, "config", field)
    assert text in info.value.message


def test_reduce_lr_on_plateau_accepts_a_schedule_at_plan_time() -> None:
    decay = {
        "class_name": "ExponentialDecay",
        "config": {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5},
    }
    trainer = _trainer({"class_name": "SGD", "config": {"learning_rate": decay}})
    cb = get({"class_name": "ReduceLROnPlateau", "config": {"monitor": "loss"}}, ("cb", 1))
    plan = trainer.plan_fit(X, Y, callbacks=[cb])
    assert plan.callbacks == [cb]


def test_model_checkpoint_calls_its_sink_instead_of_keeping_weights() -> None:
    calls: list[tuple[int, dict[str, float], int | None]] = []
    cb = ModelCheckpoint(monitor="loss", save_freq=3)
    cb.set_sink(lambda epoch, logs, batch: calls.append((epoch, dict(logs), batch)))
    _trainer().fit(X, Y, args=FitArgs(batch_size=2, epochs=2, shuffle=False), callbacks=[cb])
    assert [(e, b) for e, _, b in calls] == [(0, 2), (1, 0), (1, 3)] == cb.saves
    assert all(set(logs) == {"loss", "mae"} for _, logs, _ in calls)
    assert cb.last_saved is None


def test_progress_is_throttled_by_its_clock() -> None:
    now = [0.0]
    events: list[dict[str, Any]] = []

    def clock() -> float:
        now[0] += 0.1  # each batch takes 0.1 s
        return now[0]

    cb = ProgressReporter(events.append, epochs=2, min_interval_s=0.25, clock=clock)
    _trainer().fit(X, Y, args=FitArgs(batch_size=2, epochs=2, shuffle=False), callbacks=[cb])
    assert [(e["epoch"], e["batch"]) for e in events] == [(0, 0), (0, 3), (1, 1), (1, 4)]
    assert all(e["steps"] == 5 and e["epochs"] == 2 for e in events)
    assert set(events[0]["logs"]) == {"loss", "mae"}
