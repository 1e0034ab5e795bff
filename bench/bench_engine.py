"""Per-epoch time of the scenario's training: our engine beside a hand-written torch loop doing
the same work (shuffled batches of 128, Adam, BCE, accuracy, a validation pass over the 500
rows each epoch, one host read of the logs per epoch), in the same process.

    python -m bench.bench_engine [--epochs 300] [--repeats 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from bench.report import Row
from tests.support import scenario


def raw_loop(epochs: int, device: torch.device) -> float:
    x = torch.as_tensor(scenario.X, device=device)
    y = torch.as_tensor(scenario.Y, device=device).reshape(-1, 1)
    g = torch.Generator().manual_seed(0)
    w1 = torch.nn.Parameter(torch.empty(1, 1).uniform_(-1, 1, generator=g).to(device))
    b1 = torch.nn.Parameter(torch.zeros(1, device=device))
    w2 = torch.nn.Parameter(torch.empty(1, 1).uniform_(-1, 1, generator=g).to(device))
    b2 = torch.nn.Parameter(torch.zeros(1, device=device))
    mean, var = torch.zeros(1, device=device), torch.ones(1, device=device)
    params = [w1, b1, w2, b2]
    opt = torch.optim.Adam(params, lr=0.1, eps=1e-7)
    gen = torch.Generator(device=device).manual_seed(0)

    def forward(xb: torch.Tensor) -> torch.Tensor:
        h = torch.relu(torch.addmm(b1, (xb - mean) / var.sqrt().clamp_min(1e-7), w1))
        return torch.sigmoid(torch.addmm(b2, h, w2))

    def bce(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy(p.clamp(1e-7, 1 - 1e-7), t)

    n, bs = x.shape[0], 128
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen, device=device)
        tot = torch.zeros(4, device=device)
        for lo in range(0, n, bs):
            idx = order[lo : lo + bs]
            xb, yb = x[idx], y[idx]
            p = forward(xb)
            loss = bce(p, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                tot[0] += loss * len(idx)
                tot[1] += ((p > 0.5).float() == yb).float().sum()
        with torch.no_grad():
            for lo in range(0, n, bs):
                p = forward(x[lo : lo + bs])
                tot[2] += bce(p, y[lo : lo + bs]) * p.shape[0]
                tot[3] += ((p > 0.5).float() == y[lo : lo + bs]).float().sum()
        (tot / n).tolist()
    return (time.perf_counter() - start) / epochs


def engine_loop(epochs: int, device: torch.device) -> float:
    model = Model.from_config(scenario.MODEL, seed=0)
    trainer = Trainer(model, CompileSpec.parse(scenario.COMPILE), device=device)
    x, y = scenario.X, scenario.Y
    plan = trainer.plan_fit(x, y, args=FitArgs(batch_size=128, epochs=epochs, seed=0),
                            validation_data=(x, y))  # fmt: skip
    start = time.perf_counter()
    trainer.run_fit(plan)
    return (time.perf_counter() - start) / epochs


def measure(quick: bool = False, epochs: int = 300, repeats: int = 5) -> list[Row]:
    """The row of `python -m bench.run_all`: time per epoch, the engine over the raw loop."""
    if quick:
        epochs, repeats = 20, 1
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    raw_loop(10, device), engine_loop(10, device)  # warm up both
    raw, ours = [], []
    for _ in range(repeats):
        raw.append(raw_loop(epochs, device))
        ours.append(engine_loop(epochs, device))
    r, o = statistics.median(raw), statistics.median(ours)
    print(f"scenario: engine {o * 1e3:.3f} ms/epoch, raw loop {r * 1e3:.3f}, {o / r:.2f}x")
    return [Row(benchmark=f"the first scenario's training, {device.type}: time per epoch (4 "
                "batches, a validation pass)", ours=f"{o * 1e3:.2f} ms",
                reference=f"raw torch loop {r * 1e3:.2f} ms", ratio=o / r, goal="")]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    raw_loop(20, device), engine_loop(20, device)  # warm up both
    raw, ours = [], []
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        raw.append(raw_loop(args.epochs, device))
        ours.append(engine_loop(args.epochs, device))
    r, o = statistics.median(raw), statistics.median(ours)
    print(f"device={device} torch={torch.__version__} epochs={args.epochs} repeats={args.repeats}")
    print(f"raw torch loop : {r * 1e3:8.3f} ms/epoch (median)")
    print(f"fitapi engine  : {o * 1e3:8.3f} ms/epoch (median)")
    print(f"ratio engine/raw: {o / r:.2f}x")


if __name__ == "__main__":
    main()
