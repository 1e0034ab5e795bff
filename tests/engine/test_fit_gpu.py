"""The engine on CUDA: the scenario's fit gives the CPU's numbers (to float32 tolerance) and the
training loop reads the device only once per epoch. Skipped without a CUDA device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support import scenario

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _fit(device: str) -> tuple[dict[str, list[float]], list[np.ndarray]]:
    model = Model.from_config(scenario.MODEL, seed=1)
    trainer = Trainer(model, CompileSpec.parse(scenario.COMPILE), device=torch.device(device))
    history = trainer.fit(
        scenario.X, scenario.Y, args=FitArgs(batch_size=128, epochs=10, shuffle=False),
        validation_data=(scenario.X, scenario.Y),
    )  # fmt: skip
    return history.history, trainer.model.get_weights()


def test_cuda_fit_matches_cpu() -> None:
    cpu_history, cpu_weights = _fit("cpu")
    gpu_history, gpu_weights = _fit("cuda")
    for key, values in cpu_history.items():
        np.testing.assert_allclose(gpu_history[key], values, rtol=1e-5, atol=1e-6, err_msg=key)
    for a, b in zip(gpu_weights, cpu_weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_training_steps_do_not_sync_with_the_host() -> None:
    model = Model.from_config(scenario.MODEL, seed=1)
    trainer = Trainer(model, CompileSpec.parse(scenario.COMPILE), device=torch.device("cuda"))
    plan = trainer.plan_fit(scenario.X, scenario.Y, args=FitArgs(batch_size=128, epochs=1))
    trainer.run_fit(plan)  # warm up: lazy state, kernels
    from app.engine.arrays.checks import Arrays

    data = Arrays.from_numpy(*plan.train, torch.device("cuda"))
    params = trainer.model.trainable_parameters()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for lo in range(0, data.size, 128):
            trainer.train_step(data.take(slice(lo, lo + 128)), params)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_a_resume_point_from_a_stored_state_on_cuda() -> None:
    """A resumed attempt with no epoch left takes the resume point from the checkpoint it read
    (on the CPU) and compares it with the trainer's weights (on CUDA)."""
    from app.engine.training import checkpoint
    from app.engine.training.state import LoopState

    model = Model.from_config(scenario.MODEL, seed=1)
    trainer = Trainer(model, CompileSpec.parse(scenario.COMPILE), device=torch.device("cuda"))
    trainer.fit(scenario.X, scenario.Y, args=FitArgs(batch_size=128, epochs=1))
    stored = LoopState.from_checkpoint(
        *checkpoint.from_bytes(checkpoint.to_bytes(*trainer.state()))
    )
    with torch.no_grad():  # the fit's end changes one weight (as the EMA overwrite does)
        next(iter(trainer.model.parameters())).add_(1.0)
    final = trainer.loop_state().with_resume_point(stored)
    assert len(final.resume_weights) == 1
