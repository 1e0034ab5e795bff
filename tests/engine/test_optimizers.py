"""Optimizers against Keras 3 (torch backend): same parameters and gradient sequence in both,
parameters compared after every step; configs, errors and bit-exact resume."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from app.engine import optimizers
from app.engine.config.errors import ConfigError

SHAPES = [(3, 4), (4,), (2, 2, 3), (1,)]
STEPS = 6
RTOL, ATOL = 1e-6, 1e-7


def _initial() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.normal(size=s).astype(np.float32) for s in SHAPES]


def _gradients(steps: int = STEPS) -> list[list[np.ndarray | None]]:
    rng = np.random.default_rng(8)
    out: list[list[np.ndarray | None]] = []
    for k in range(steps):
        # Alternate tiny and large gradients: epsilon placement and clipping both show.
        scale = 1e-4 if k % 3 == 0 else 5.0
        grads: list[np.ndarray | None] = [
            (rng.normal(size=s) * scale).astype(np.float32) for s in SHAPES
        ]
        if k == 2:
            grads[1] = None  # a parameter without a gradient this step is left alone
        out.append(grads)
    return out


def _keras_config(config: dict[str, Any]) -> dict[str, Any]:
    # Keras insists on Python floats where JSON may carry ints.
    return {
        k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
        for k, v in config.items()
    }


def _params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.tensor(w)) for w in _initial()]


def _step(opt: optimizers.Optimizer, params: list[torch.nn.Parameter], grads: list[Any]) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = None if g is None else torch.tensor(g)
    opt.step()


CONFIGS = [
    ("SGD", {}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
    ("SGD", {"learning_rate": 0.05, "momentum": 0.5, "nesterov": True}),
    ("SGD", {"momentum": 1, "weight_decay": 0.01}),
    ("RMSprop", {}),
    ("RMSprop", {"learning_rate": 0.01, "rho": 0.8, "momentum": 0.5}),
    ("RMSprop", {"centered": True, "epsilon": 1e-5}),
    ("RMSprop", {"centered": True, "momentum": 0.9, "clipvalue": 0.5}),
    ("Adam", {}),
    ("Adam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"learning_rate": 1, "weight_decay": 0.004}),
    ("Adam", {"clipnorm": 1.0}),
    ("SGD", {"momentum": 0.9, "global_clipnorm": 2.0}),
    ("RMSprop", {"clipnorm": 0.5, "weight_decay": 0.1}),
]


def check_steps_match_keras(keras: Any, class_name: str, config: Any, steps: int = STEPS) -> None:
    """`steps` updates here and in Keras's optimizer of that class from the same weights and
    gradients (some missing), the rate halved after the fourth as a callback would: the weights
    and the step count agree after each."""
    theirs = getattr(keras.optimizers, class_name)(**_keras_config(config))
    variables = [keras.Variable(w) for w in _initial()]
    ours = optimizers.get({"class_name": class_name, "config": config}, ("optimizer",))
    params = _params()
    ours.build(params)
    for k, grads in enumerate(_gradients(steps)):
        if k == 4:  # a rate change mid-run (SGD's velocity is LR-scaled, Ftrl's beta term...)
            theirs.learning_rate = 0.5 * float(theirs.learning_rate)
            ours.learning_rate = 0.5 * ours.learning_rate
        theirs.apply(
            [None if g is None else keras.ops.convert_to_tensor(g) for g in grads], variables
        )
        _step(ours, params, grads)
        assert ours.iterations == int(theirs.iterations) == k + 1
        for v, p in zip(variables, params, strict=True):
            np.testing.assert_allclose(
                p.detach().numpy(), np.asarray(v.numpy()), rtol=RTOL, atol=ATOL
            )


@pytest.mark.filterwarnings("ignore:Gradients do not exist")
@pytest.mark.parametrize(("class_name", "config"), CONFIGS)
def test_matches_keras_step_by_step(keras, class_name, config):
    check_steps_match_keras(keras, class_name, config)


@pytest.mark.parametrize(("class_name", "config"), CONFIGS)
def test_config_matches_keras(keras, class_name, config):
    ours = optimizers.get({"class_name": class_name, "config": config}, ())
    theirs = getattr(keras.optimizers, class_name)(**_keras_config(config)).get_config()
    assert {**ours.get_config(), "name": None} == {**theirs, "name": None}
    # Keras's full config (all base keys) is accepted and round-trips exactly.
    assert type(ours).from_config(theirs, ()).get_config() == theirs


@pytest.mark.parametrize("cls", optimizers.OPTIMIZERS.classes(), ids=lambda c: c.__name__)
def test_config_round_trip(keras, cls):
    config = cls.from_config({}, ()).get_config()
    assert cls.from_config(config, ()).get_config() == config
    theirs = getattr(keras.optimizers, cls.__name__)().get_config()
    # Keras numbers its default names per process (adam, adam_1, ...).
    assert theirs["name"].startswith(config["name"])
    assert {**config, "name": None} == {**theirs, "name": None}
    assert optimizers.get({"class_name": cls.__name__, "config": config}, ()).get_config() == config


@pytest.mark.parametrize(
    ("identifier", "cls"),
    [("adam", optimizers.Adam), ("Adam", optimizers.Adam), ("ADAM", optimizers.Adam),
     ("rmsprop", optimizers.RMSprop), ("RMSprop", optimizers.RMSprop),
     ("sgd", optimizers.SGD), ("SGD", optimizers.SGD), ({"class_name": "adam"}, optimizers.Adam)],
)  # fmt: skip
def test_names_are_case_insensitive(keras, identifier, cls):
    ours = optimizers.get(identifier, ())
    assert type(ours) is cls
    assert ours.learning_rate == keras.optimizers.get(identifier).get_config()["learning_rate"]


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [({"lr": 0.1}, "lr", "unknown"),
     ({"decay": 0.1}, "decay", "unknown"),
     ({"learning_rate": 0}, "learning_rate", "> 0"),
     ({"learning_rate": -0.1}, "learning_rate", "> 0"),
     ({"learning_rate": "fast"}, "learning_rate", "number"),
     ({"learning_rate": float("inf")}, "learning_rate", "finite"),
     ({"learning_rate": [0.1]}, "learning_rate", "number"),
     ({"momentum": 1.5}, "momentum", "<= 1"),
     ({"momentum": -0.1}, "momentum", ">= 0"),
     ({"nesterov": 1}, "nesterov", "true or false"),
     ({"use_ema": 1}, "use_ema", "true or false"),
     ({"ema_momentum": 1.5}, "ema_momentum", "<= 1"),
     ({"ema_overwrite_frequency": 0}, "ema_overwrite_frequency", ">= 1"),
     ({"loss_scale_factor": 0.0}, "loss_scale_factor", "> 0"),
     ({"gradient_accumulation_steps": 1}, "gradient_accumulation_steps", ">= 2"),
     ({"clipnorm": 1.0, "clipvalue": 1.0}, "clipvalue", "only one"),
     ({"clipnorm": -1.0}, "clipnorm", ">= 0"),
     ({"weight_decay": -0.1}, "weight_decay", ">= 0"),
     ({"name": 7}, "name", "string")],
)  # fmt: skip
def test_bad_sgd_configs_name_the_field(config, key, message):
    with pytest.raises(ConfigError) as err:
        optimizers.get({"class_name": "SGD", "config": config}, ("compile", "optimizer"))
    assert err.value.loc == ("compile", "optimizer", "config", key)
    assert message in err.value.message


@pytest.mark.parametrize(
    ("class_name", "config", "key"),
    [("Adam", {"beta_1": 1.0}, "beta_1"), ("Adam", {"beta_2": -0.5}, "beta_2"),
     ("Adam", {"epsilon": -1e-7}, "epsilon"), ("Adam", {"amsgrad": "no"}, "amsgrad"),
     ("RMSprop", {"rho": 1.5}, "rho"), ("RMSprop", {"centered": None}, "centered"),
     ("RMSprop", {"momentum": -1.0}, "momentum")],
)  # fmt: skip
def test_bad_hyperparameters(class_name, config, key):
    with pytest.raises(ConfigError) as err:
        optimizers.get({"class_name": class_name, "config": config}, ("o",))
    assert err.value.loc == ("o", "config", key)


@pytest.mark.parametrize(
    ("identifier", "loc"),
    [("lamb", ("o",)), ("adamw_typo", ("o",)), (12, ("o",)),
     ({"class_name": "Nope"}, ("o", "class_name")),
     ({"class_name": "Adam", "module": "torch.optim"}, ("o", "module"))],
)  # fmt: skip
def test_bad_identifiers(identifier, loc):
    with pytest.raises(ConfigError) as err:
        optimizers.get(identifier, ("o",))
    assert err.value.loc == loc


def test_int_learning_rate_is_accepted():
    # Keras raises for learning_rate=1 (an int); JSON clients cannot always send 1.0.
    opt = optimizers.get({"class_name": "SGD", "config": {"learning_rate": 1}}, ())
    assert opt.learning_rate == 1.0 and isinstance(opt.learning_rate, float)


def test_learning_rate_is_float32_like_keras():
    opt = optimizers.get("adam", ())
    opt.learning_rate = 0.1
    assert opt.learning_rate == float(np.float32(0.1))
    with pytest.raises(ValueError):
        opt.learning_rate = float("nan")


def check_resume_bit_exact(identifier: Any) -> None:
    """Eight steps straight, and four, a checkpoint (state_dict), a fresh optimizer loading it
    and four more, give the same weights bit for bit; the rate a callback lowered just before
    the checkpoint is carried, and building twice keeps the state."""
    grads = _gradients(8)
    straight = optimizers.get(identifier, ())
    params = _params()
    straight.build(params)
    for k, g in enumerate(grads):
        if k == 4:
            straight.learning_rate = 0.5 * straight.learning_rate
        _step(straight, params, g)

    first = optimizers.get(identifier, ())
    half = _params()
    first.build(half)
    first.build(half)  # building again keeps the state (Adagrad's and Ftrl's start values too)
    for g in grads[:4]:
        _step(first, half, g)
    first.learning_rate = 0.5 * first.learning_rate  # the checkpoint must carry it
    tensors, meta = first.state_dict()
    assert all(k.startswith(type(first).__name__.lower() + ".") for k in tensors)

    resumed = optimizers.get(identifier, ())
    copies = [torch.nn.Parameter(p.detach().clone()) for p in half]
    resumed.build(copies)
    resumed.load_state_dict(tensors, meta)
    for g in grads[4:]:
        _step(resumed, copies, g)
    assert resumed.iterations == straight.iterations == 8
    for a, b in zip(params, copies, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("class_name", "config"), CONFIGS)
def test_resume_is_bit_exact(class_name, config):
    check_resume_bit_exact({"class_name": class_name, "config": config})


def test_state_dict_meta_is_json_and_restores_the_rate():
    import json

    opt = optimizers.get({"class_name": "SGD", "config": {"momentum": 0.9}}, ())
    params = _params()
    opt.build(params)
    _step(opt, params, _gradients(1)[0])
    opt.learning_rate = 0.001
    tensors, meta = opt.state_dict()
    meta = json.loads(json.dumps(meta))
    other = optimizers.get({"class_name": "SGD", "config": {"momentum": 0.9}}, ())
    other.build(_params())
    other.load_state_dict(tensors, meta)
    assert other.learning_rate == opt.learning_rate and other.iterations == 1
    assert set(tensors) == {f"sgd.momentum.{i}" for i in range(len(SHAPES))}


def test_load_state_dict_checks_what_it_gets():
    opt = optimizers.get("adam", ())
    opt.build(_params())
    tensors, meta = opt.state_dict()
    rms = optimizers.get("rmsprop", ())
    rms.build(_params())
    with pytest.raises(ValueError):
        rms.load_state_dict(tensors, meta)
    other = optimizers.get("adam", ())
    other.build(_params())
    with pytest.raises(ValueError):
        other.load_state_dict({k: v for k, v in tensors.items() if k != "adam.m.0"}, meta)
    with pytest.raises(ValueError):
        other.load_state_dict({**tensors, "adam.m.0": torch.zeros(2)}, meta)
    with pytest.raises(RuntimeError):
        optimizers.get("adam", ()).load_state_dict(tensors, meta)


def test_build_and_step_rules():
    opt = optimizers.get("sgd", ())
    with pytest.raises(RuntimeError):
        opt.step()
    params = _params()
    opt.build(params)
    opt.build(params)  # the same parameters again: a no-op
    with pytest.raises(ValueError):
        opt.build(_params())
    with pytest.raises(ValueError):
        opt.step()  # no parameter has a gradient
    empty = optimizers.get("adam", ())
    empty.build([])
    empty.step()
    assert empty.iterations == 0


def check_cuda_step(identifier: Any) -> None:
    """Steps on CUDA never wait for the device (a sync raises) and match the same steps on CPU."""
    opt = optimizers.get(identifier, ())
    params = [torch.nn.Parameter(p.detach().cuda()) for p in _params()]
    opt.build(params)
    grads = [[None if g is None else torch.tensor(g).cuda() for g in gs] for gs in _gradients()]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for gs in grads:
            for p, g in zip(params, gs, strict=True):
                p.grad = g
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    cpu = _params()
    ref = optimizers.get(identifier, ())
    ref.build(cpu)
    for gs in _gradients():
        _step(ref, cpu, gs)
    for a, b in zip(params, cpu, strict=True):
        np.testing.assert_allclose(
            a.detach().cpu().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("class_name", "config"), CONFIGS)
def test_step_never_synchronises_on_cuda(class_name, config):
    check_cuda_step({"class_name": class_name, "config": config})


def _adam_reference(
    params: list[torch.Tensor], grads_seq: list[list[torch.Tensor]], config: dict[str, Any]
) -> list[torch.Tensor]:
    """Keras's torch Adam written out as Keras writes it (every `_foreach_*` call out of place,
    nested as in `keras/src/backend/torch/optimizers/torch_adam.py`), on copies of `params`."""
    lr, b1, b2 = config.get("learning_rate", 0.001), config.get("beta_1", 0.9), 0.999
    eps, amsgrad = config.get("epsilon", 1e-7), config.get("amsgrad", False)
    ps = [p.clone() for p in params]
    m, v, v_hat = ([torch.zeros_like(p) for p in ps] for _ in range(3))
    for k, grads in enumerate(grads_seq):
        lr_t = torch.full((), float(np.float32(lr)))
        step = torch.full((), float(k + 1))
        beta_1_power = torch.pow(torch.full((), b1), step)
        beta_2_power = torch.pow(torch.full((), b2), step)
        alpha = lr_t * torch.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, grads, alpha=1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_add_(v, torch._foreach_mul(grads, grads), alpha=1 - b2)
        denom_from = v
        if amsgrad:
            torch._foreach_maximum_(v_hat, v)
            denom_from = v_hat
        torch._foreach_add_(
            ps,
            torch._foreach_div(
                torch._foreach_mul(m, alpha),
                torch._foreach_add(torch._foreach_sqrt(denom_from), eps),
            ),
            alpha=-1,
        )
    return ps


@pytest.mark.parametrize(
    "config", [{}, {"amsgrad": True}, {"learning_rate": 0.01, "beta_1": 0.8, "epsilon": 1e-6}]
)
def test_adam_update_is_bit_identical_to_kerass_out_of_place_form(config):
    """The Adam step reuses its temporaries in place; the weights stay bit-identical to the
    out-of-place form Keras writes, over several steps on tensors of a dense model's sizes."""
    g = torch.Generator().manual_seed(3)
    shapes = [(784, 256), (256,), (256, 10), (10,)]
    initial = [torch.randn(s, generator=g) for s in shapes]
    grads_seq = [
        [torch.randn(s, generator=g) * (1e-4 if k % 2 else 3.0) for s in shapes] for k in range(5)
    ]
    expected = _adam_reference(initial, grads_seq, config)
    opt = optimizers.get({"class_name": "Adam", "config": config}, ("optimizer",))
    params = [torch.nn.Parameter(p.clone()) for p in initial]
    opt.build(params)
    for grads in grads_seq:
        for p, gr in zip(params, grads, strict=True):
            p.grad = gr.clone()
        opt.step()
    for p, e in zip(params, expected, strict=True):
        assert torch.equal(p.detach(), e)
