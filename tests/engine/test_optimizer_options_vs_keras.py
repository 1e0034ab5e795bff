"""The optimizer-wide options against Keras 3 (torch backend) in fit: learning-rate schedules,
the EMA of the weights, gradient accumulation, loss scaling and the LearningRateScheduler
callback. Both fit the same model from the same weights without shuffling; every History value
and the final weights must agree to float32 rounding. Then a checkpoint taken mid-fit resumes
bit for bit, and the refusals."""

from __future__ import annotations

import copy
import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine import callbacks as engine_callbacks
from app.engine import optimizers
from app.engine.callbacks import Callback, Logs
from app.engine.config.errors import ConfigError
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.state import LoopState
from app.engine.training.trainer import Trainer
from tests.engine.test_optimizers import _gradients, _initial, _params, _step
from tests.support.keras_fit import assert_same_fit, fit_results, sequential
from tests.support.keras_json import keras_json
from tests.support.tolerance import Tolerance, keras_drift

# The model's own forward and backward differ from Keras's by float32 roundings: a fit is held to
# a multiple of Keras's one-ulp drift (CONTRIBUTING.md); the step-by-step tests hold the options
# themselves to bit equality.
MLP = sequential(
    [("Dense", {"units": 5, "activation": "tanh"}), ("Dense", {"units": 2})], [None, 3]
)
BATCH, EPOCHS = 4, 3  # 22 samples: 6 steps an epoch, the last one short


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.normal(size=(22, 3)).astype(np.float32), rng.normal(size=(22, 2)).astype(np.float32)


def _schedule(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Keras's serialized form (Keras needs the module inside an optimizer's config)."""
    return {"module": "keras.optimizers.schedules", "class_name": class_name, "config": config,
            "registered_name": None}  # fmt: skip


SCHEDULES = [
    _schedule("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 4,
                                   "decay_rate": 0.6}),
    _schedule("PiecewiseConstantDecay", {"boundaries": [5, 11], "values": [0.1, 0.03, 0.01]}),
    _schedule("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 7, "power": 2.0,
                                  "cycle": True}),
    _schedule("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 3,
                                   "decay_rate": 0.5, "staircase": True}),
    _schedule("CosineDecay", {"initial_learning_rate": 0.01, "decay_steps": 10, "alpha": 0.1,
                              "warmup_target": 0.1, "warmup_steps": 4}),
    _schedule("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 3,
                                      "t_mul": 1.5, "m_mul": 0.8}),
]  # fmt: skip
_IDS = [s["class_name"] for s in SCHEDULES]


STEP_CONFIGS = [
    {"use_ema": True},
    {"use_ema": True, "ema_momentum": 0.5, "ema_overwrite_frequency": 2},
    {"gradient_accumulation_steps": 3},
    {"gradient_accumulation_steps": 2, "use_ema": True, "ema_overwrite_frequency": 2,
     "clipnorm": 1.0, "weight_decay": 0.05},
    {"loss_scale_factor": 3.0, "clipvalue": 0.5},
    {"loss_scale_factor": 0.25, "gradient_accumulation_steps": 2, "learning_rate": SCHEDULES[2]},
    {"learning_rate": SCHEDULES[5], "use_ema": True},
]  # fmt: skip


@pytest.mark.filterwarnings("ignore:Gradients do not exist")
@pytest.mark.parametrize("config", STEP_CONFIGS)
@pytest.mark.parametrize("name", ["SGD", "Adam", "Nadam"])
def test_options_step_by_step(keras, name, config):
    """On raw gradients (one parameter without a gradient at the third step): every parameter
    after every apply, bit for bit, the counters, the rate and the final EMA copy."""
    config = {"learning_rate": 0.05, **config, **({"momentum": 0.9} if name == "SGD" else {})}
    theirs = getattr(keras.optimizers, name).from_config(copy.deepcopy(config))
    variables = [keras.Variable(w) for w in _initial()]
    ours = optimizers.get({"class_name": name, "config": config}, ("optimizer",))
    params = _params()
    ours.build(params)
    for grads in _gradients(8):
        assert ours.learning_rate == float(theirs.learning_rate)
        tensors = [None if g is None else keras.ops.convert_to_tensor(g) for g in grads]
        theirs.apply(tensors, variables)
        _step(ours, params, grads)
        assert ours.iterations == int(theirs.iterations)
        for v, p in zip(variables, params, strict=True):
            np.testing.assert_array_equal(p.detach().numpy(), v.numpy())
    theirs.finalize_variable_values(variables)
    ours.finalize_variable_values()
    for v, p in zip(variables, params, strict=True):
        np.testing.assert_array_equal(p.detach().numpy(), v.numpy())


def _keras(keras: ModuleType, optimizer: dict[str, Any]) -> Any:
    """Keras's model compiled with its twin of `optimizer` (made from the class, as Lamb has no
    string name)."""
    keras.utils.set_random_seed(1)
    km = keras.models.model_from_json(keras_json(MLP))
    twin = getattr(keras.optimizers, optimizer["class_name"])
    km.compile(optimizer=twin.from_config(copy.deepcopy(optimizer["config"])), loss="mse")
    return km


def _pair(keras: ModuleType, optimizer: dict[str, Any]) -> tuple[Any, Trainer]:
    """`_keras`'s model and our trainer with the same weights."""
    km = _keras(keras, optimizer)
    ours = Model.from_config(MLP, seed=0)
    ours.set_weights(km.get_weights())
    return km, Trainer(ours, CompileSpec.parse({"optimizer": optimizer, "loss": "mse"}))


def _fit_both(
    keras: ModuleType,
    optimizer: dict[str, Any],
    *,
    callbacks: tuple[dict[str, Any], list[Any]] | None = None,
    exact: bool = False,
) -> tuple[Trainer, Any]:
    x, y = _data()
    km, trainer = _pair(keras, optimizer)
    initial = km.get_weights()
    ours_cbs, keras_cbs = ([], []) if callbacks is None else ([callbacks[0]], callbacks[1])

    def fit(m: Any) -> dict[str, list[float]]:
        return dict(m.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                          callbacks=keras_cbs).history)  # fmt: skip

    theirs = fit(km)
    cbs = [engine_callbacks.get(c, ("callbacks", i)) for i, c in enumerate(ours_cbs)]
    args = FitArgs(batch_size=BATCH, epochs=EPOCHS, shuffle=False)
    history = trainer.fit(x, y, args=args, callbacks=cbs).history
    if exact:
        bit_exact = Tolerance(0.0, 0.0, "bit-exact: the same operations in the same order")
        assert_same_fit(history, theirs, trainer, km, floor=bit_exact)
    else:

        def run(weights: list[np.ndarray]) -> dict[str, Any]:
            other = _keras(keras, optimizer)
            other.set_weights(weights)
            return fit_results(fit(other), other)

        drift = keras_drift(run, initial, baseline=fit_results(theirs, km))
        assert isinstance(drift, dict)
        assert_same_fit(history, theirs, trainer, km, drift=drift)
    assert trainer.optimizer.iterations == int(km.optimizer.iterations)
    return trainer, km


@pytest.mark.parametrize("schedule", SCHEDULES, ids=_IDS)
@pytest.mark.parametrize(
    "optimizer",
    [{"class_name": "SGD", "config": {"momentum": 0.9, "weight_decay": 0.01}},
     {"class_name": "Adam", "config": {"amsgrad": True}}],
    ids=["SGD", "Adam"],
)  # fmt: skip
def test_schedules_in_fit(keras, optimizer, schedule):
    optimizer = copy.deepcopy(optimizer)
    optimizer["config"]["learning_rate"] = schedule
    trainer, km = _fit_both(keras, optimizer)
    assert trainer.optimizer.schedule is not None
    assert (
        trainer.optimizer.get_config()["learning_rate"]
        == km.optimizer.get_config()["learning_rate"]
    )


def _keras_rejects(keras: ModuleType, optimizer: dict[str, Any]) -> bool:
    try:
        getattr(keras.optimizers, optimizer["class_name"]).from_config(
            copy.deepcopy(optimizer["config"])
        )
    except (ValueError, TypeError):
        return True
    return False


@pytest.mark.parametrize("overwrite", [None, 4], ids=["final", "every4"])
@pytest.mark.parametrize("name", optimizers.OPTIMIZERS.names())
def test_ema_and_schedule_with_every_optimizer(keras, name, overwrite):
    schedule = _schedule("ExponentialDecay", {"initial_learning_rate": 0.05, "decay_steps": 5,
                                              "decay_rate": 0.7})  # fmt: skip
    config = {"learning_rate": schedule, "use_ema": True, "ema_momentum": 0.8,
              "ema_overwrite_frequency": overwrite}  # fmt: skip
    optimizer = {"class_name": name, "config": config}
    if _keras_rejects(keras, optimizer):
        with pytest.raises((ConfigError, ValueError)):
            optimizers.get(optimizer, ("optimizer",))
        return
    _fit_both(keras, optimizer)


@pytest.mark.parametrize(
    "config",
    [{"gradient_accumulation_steps": 4},
     {"gradient_accumulation_steps": 2, "clipnorm": 0.5, "weight_decay": 0.1,
      "learning_rate": SCHEDULES[0]},
     {"gradient_accumulation_steps": 3, "use_ema": True, "ema_overwrite_frequency": 1,
      "learning_rate": SCHEDULES[4]},
     {"gradient_accumulation_steps": 5, "use_ema": True, "global_clipnorm": 1.0,
      "learning_rate": SCHEDULES[1]}],
    ids=["plain", "clip-decay-schedule", "ema-overwrite", "ema-globalclip"],
)  # fmt: skip
@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_gradient_accumulation(keras, name, config):
    config = {"learning_rate": 0.05, **config}
    if name == "SGD":
        config["momentum"] = 0.5
    trainer, _ = _fit_both(keras, {"class_name": name, "config": config})
    steps = EPOCHS * 6
    assert trainer.optimizer.steps == steps
    assert trainer.optimizer.iterations == steps // config["gradient_accumulation_steps"]


@pytest.mark.parametrize("scale", [128.0, 3.0, 0.1])
@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_loss_scale_factor(keras, name, scale):
    # The logged loss is the unscaled one; the gradients are divided back before the update.
    _fit_both(keras, {"class_name": name, "config": {"learning_rate": 0.02,
                                                      "loss_scale_factor": scale}})  # fmt: skip


@pytest.mark.parametrize("schedule", SCHEDULES, ids=_IDS)
def test_learning_rate_scheduler_callback(keras, schedule):
    theirs = keras.optimizers.schedules.deserialize(schedule)

    # Keras's callback takes a function of the epoch that must return a Python float.
    def by_epoch(epoch: int) -> float:
        return float(theirs(epoch))

    callbacks = (
        {"class_name": "LearningRateScheduler", "config": {"schedule": schedule}},
        [keras.callbacks.LearningRateScheduler(by_epoch)],
    )
    optimizer = {"class_name": "SGD", "config": {"learning_rate": 0.5, "momentum": 0.9}}
    trainer, _ = _fit_both(keras, optimizer, callbacks=callbacks)
    assert trainer.optimizer.learning_rate == float(theirs(EPOCHS - 1))


class _Snapshot(Callback):
    """Keeps the trainer's state (copied) at the end of epoch `at`, as a checkpoint would."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.state: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if epoch == self.at:
            tensors, meta = self.trainer.state()
            self.state = ({k: t.clone() for k, t in tensors.items()},
                          json.loads(json.dumps(meta)))  # fmt: skip


def test_resume_with_ema_accumulation_and_schedule_is_bit_exact(keras):
    x, y = _data()
    optimizer = {"class_name": "Adam", "config": {
        "learning_rate": SCHEDULES[5], "use_ema": True, "ema_momentum": 0.9,
        "gradient_accumulation_steps": 5, "weight_decay": 0.01}}  # fmt: skip
    _, straight = _pair(keras, optimizer)
    snapshot = _Snapshot(at=1)  # 12 applies: the accumulators hold two steps' gradients
    args = FitArgs(batch_size=BATCH, epochs=4, shuffle=False)
    full = straight.fit(x, y, args=args, callbacks=[snapshot]).history
    assert snapshot.state is not None
    tensors, meta = snapshot.state
    assert any(".average." in k for k in tensors)
    assert any(".gradient_accumulator." in k and bool(t.any()) for k, t in tensors.items())
    assert meta["optimizer"]["steps"] == 12 and meta["optimizer"]["iterations"] == 2

    _, resumed = _pair(keras, optimizer)
    args = FitArgs(batch_size=BATCH, epochs=4, shuffle=False, initial_epoch=2)
    rest = resumed.fit(x, y, args=args, resume=LoopState.from_checkpoint(tensors, meta)).history
    assert rest == {k: v[2:] for k, v in full.items()}
    for a, b in zip(resumed.model.get_weights(), straight.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed.optimizer.learning_rate == straight.optimizer.learning_rate


def test_a_scheduled_rate_cannot_be_set():
    schedule = SCHEDULES[0]
    opt = optimizers.get({"class_name": "SGD", "config": {"learning_rate": schedule}}, ())
    assert opt.learning_rate == np.float32(0.1)
    with pytest.raises(TypeError, match="schedule"):
        opt.learning_rate = 0.01


def test_learning_rate_scheduler_is_refused_with_a_scheduled_optimizer(keras):
    x, y = _data()
    _, trainer = _pair(keras, {"class_name": "SGD", "config": {"learning_rate": SCHEDULES[0]}})
    cb = engine_callbacks.get(
        {"class_name": "LearningRateScheduler", "config": {"schedule": SCHEDULES[1]}}, ("cb",)
    )
    with pytest.raises(ConfigError) as err:
        trainer.plan_fit(x, y, callbacks=[cb], loc=("fit",))
    assert err.value.loc == ("fit", "callbacks", 0)
    assert "schedule" in err.value.message


def test_learning_rate_scheduler_config():
    config = {"schedule": SCHEDULES[2], "verbose": 1}
    cb = engine_callbacks.get({"class_name": "LearningRateScheduler", "config": config}, ())
    written = cb.get_config()
    assert written["schedule"]["config"] == {"end_learning_rate": 0.0001, "name": "PolynomialDecay",
                                             **SCHEDULES[2]["config"]}  # fmt: skip
    again = engine_callbacks.get({"class_name": "LearningRateScheduler", "config": written}, ())
    assert again.get_config() == written
    for bad, loc in [({}, ("cb", "config", "schedule")),
                     ({"schedule": 0.1}, ("cb", "config", "schedule")),
                     ({"schedule": SCHEDULES[0], "verbose": -1}, ("cb", "config", "verbose")),
                     ({"schedule": SCHEDULES[0], "lr": 1}, ("cb", "config", "lr"))]:  # fmt: skip
        with pytest.raises(ConfigError) as err:
            engine_callbacks.get({"class_name": "LearningRateScheduler", "config": bad}, ("cb",))
        assert err.value.loc == loc


def test_option_configs_round_trip_with_keras(keras):
    config = {"learning_rate": SCHEDULES[4], "use_ema": True, "ema_momentum": 0.5,
              "ema_overwrite_frequency": 3, "loss_scale_factor": 64.0,
              "gradient_accumulation_steps": 2}  # fmt: skip
    ours = optimizers.get({"class_name": "Adam", "config": config}, ()).get_config()
    theirs = keras.optimizers.Adam.from_config(copy.deepcopy(config)).get_config()
    assert {**ours, "name": None} == {**theirs, "name": None}
    assert optimizers.get({"class_name": "Adam", "config": theirs}, ()).get_config() == theirs
