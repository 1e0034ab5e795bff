"""A model's weights file, typed: new weights, and from the file it replaces only what a compiled
model carries between fits (optimizer, RNG, seed, epoch, loss scale, compile config), never a
fit's batch position, callbacks or resume point; without an optimizer state, the weights alone.
The file it replaces here is a fit's final checkpoint written by earlier code (tests/fixtures)."""

from __future__ import annotations

from pathlib import Path

import torch

from app.engine.training.checkpoint import Checkpoint
from app.models.loading import weights_checkpoint

FIXTURES = Path(__file__).parent.parent / "fixtures"
CONFIG = {"class_name": "Sequential", "config": {"layers": []}}


def _final() -> Checkpoint:
    return Checkpoint.from_bytes((FIXTURES / "checkpoint_final.safetensors").read_bytes())


def test_a_weights_file_carries_the_optimizer_part_of_the_file_it_replaces() -> None:
    final = _final()
    was = final.state
    assert was.batches is not None and was.callbacks is not None and was.resume_weights
    weights = {k: t + 1 for k, t in was.weights.items()}
    out = Checkpoint.from_bytes(weights_checkpoint(weights, CONFIG, carried=final).to_bytes())
    assert out.state.weights.keys() == weights.keys()
    assert all(torch.equal(out.state.weights[k], t) for k, t in weights.items())
    assert out.state.optimizer.keys() == was.optimizer.keys()
    assert all(torch.equal(out.state.optimizer[k], t) for k, t in was.optimizer.items())
    assert out.state.optimizer_meta == was.optimizer_meta is not None
    assert was.rng is not None and out.state.rng is not None
    assert torch.equal(out.state.rng, was.rng)
    assert (out.state.seed, out.state.epoch) == (was.seed, was.epoch)
    assert out.state.batches is None and out.state.callbacks is None
    assert out.state.resume_weights == {} and not out.state.stop_training
    assert out.info.model_config == CONFIG
    assert out.info.compile_config == final.info.compile_config
    assert out.info.logs is None and out.info.job_id is None and not out.info.final


def test_without_an_optimizer_state_a_weights_file_holds_the_weights_alone() -> None:
    weights = {"dense/kernel": torch.ones(2, 3)}
    for carried in (None, Checkpoint(weights_checkpoint(weights, CONFIG).state)):
        out = Checkpoint.from_bytes(weights_checkpoint(weights, CONFIG, carried=carried).to_bytes())
        assert out.state.optimizer == {} and out.state.optimizer_meta is None
        assert out.state.rng is None and out.state.seed is None and out.state.epoch == -1
        assert out.info.model_config == CONFIG and out.info.compile_config is None
        assert torch.equal(out.state.weights["dense/kernel"], weights["dense/kernel"])
