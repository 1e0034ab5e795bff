"""Training throughput of the engine beside two hand-written torch loops, in one process:

- **same math**: what Keras computes, written by hand: a softmax (or sigmoid) output, Keras's
  crossentropy on probabilities clipped to [1e-7, 1 - 1e-7], Keras's Adam rule (bias
  corrections folded into the step size, epsilon added to sqrt(v)) through `torch._foreach_*`,
  Keras's LSTM cell step by step (on CUDA the fused kernel, as Keras and the engine take it),
  loss and accuracy accumulated on the device and read once per epoch;
- **plain**: the usual torch loop: logits, fused `cross_entropy` (or
  `binary_cross_entropy_with_logits`), `torch.optim.Adam`, `torch.nn.LSTM`.

Workloads: an MLP 784-256-128-10 on 60,000 rows, a small CNN on 28x28x1, an LSTM text model
(Embedding 1000x32, LSTM 64, Dense 1 sigmoid, sequences of 40). Each is warmed up, then the three
loops run interleaved `--repeats` times; the medians' samples/s (by wall time) and the ratios
are printed, and the ratios by this process's CPU time, which other load on a shared machine
disturbs less.

    python -m bench.bench_train [--device cpu|cuda] [--repeats 3] [--quick] [--only mlp,cnn,lstm]
                                [--precision float32|mixed_bfloat16|mixed_float16]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from bench.report import Row

HALF = {"mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}
WHAT = {"mlp": "MLP 784-256-128-10", "cnn": "CNN on 28x28x1", "lstm": "LSTM text model"}
EPS = 1e-7
LR, BETA_1, BETA_2 = 1e-3, 0.9, 0.999
Tensor = torch.Tensor


def _seq(name: str, *layers: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "class_name": "Sequential",
        "config": {"name": name, "layers": [{"class_name": c, "config": k} for c, k in layers]},
    }


MLP = _seq(
    "mlp",
    ("InputLayer", {"batch_shape": [None, 784]}),
    ("Dense", {"units": 256, "activation": "relu"}),
    ("Dense", {"units": 128, "activation": "relu"}),
    ("Dense", {"units": 10, "activation": "softmax"}),
)
CNN = _seq(
    "cnn",
    ("InputLayer", {"batch_shape": [None, 28, 28, 1]}),
    ("Conv2D", {"filters": 16, "kernel_size": [3, 3], "activation": "relu"}),
    ("MaxPooling2D", {"pool_size": [2, 2]}),
    ("Conv2D", {"filters": 32, "kernel_size": [3, 3], "activation": "relu"}),
    ("MaxPooling2D", {"pool_size": [2, 2]}),
    ("Flatten", {}),
    ("Dense", {"units": 10, "activation": "softmax"}),
)
LSTM = _seq(
    "lstm",
    ("InputLayer", {"batch_shape": [None, 40], "dtype": "int32"}),
    ("Embedding", {"input_dim": 1000, "output_dim": 32}),
    ("LSTM", {"units": 64}),
    ("Dense", {"units": 1, "activation": "sigmoid"}),
)
SPARSE = {"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
BINARY = {"optimizer": "adam", "loss": "binary_crossentropy", "metrics": ["accuracy"]}


@dataclass
class Workload:
    name: str
    model: dict[str, Any]
    compile: dict[str, Any]
    rows: int
    batch: int
    epochs: int
    x: np.ndarray
    y: np.ndarray
    policy: str = "float32"  # Keras's dtype policy; the hand-written loops autocast to match


def make_workloads(scale: int, only: set[str], policy: str = "float32") -> list[Workload]:
    """The workloads named in `only`, with their row counts divided by `scale`."""
    rng = np.random.default_rng(0)
    out = []
    if "mlp" in only:
        n = 60_000 // scale
        x = rng.random((n, 784), dtype=np.float32)
        out.append(Workload("mlp", MLP, SPARSE, n, 128, 2, x, rng.integers(0, 10, n)))
    if "cnn" in only:
        n = 6_000 // scale
        x = rng.random((n, 28, 28, 1), dtype=np.float32)
        out.append(Workload("cnn", CNN, SPARSE, n, 128, 1, x, rng.integers(0, 10, n)))
    if "lstm" in only:
        n = 2_000 // scale
        x = rng.integers(0, 1000, (n, 40)).astype(np.int32)
        y = rng.integers(0, 2, (n, 1)).astype(np.float32)
        out.append(Workload("lstm", LSTM, BINARY, n, 128, 1, x, y))
    for w in out:
        w.policy = policy
    return out


# -- the engine ------------------------------------------------------------------------------------
Timing = tuple[float, float]  # wall seconds, this process's CPU seconds


def _clock() -> Timing:
    return time.perf_counter(), time.process_time()


def _since(start: Timing) -> Timing:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def engine_fit(w: Workload, device: torch.device) -> Timing:
    """Seconds of `Trainer.run_fit` on a model built from its Keras JSON."""
    spec = CompileSpec.parse({**w.compile, "dtype_policy": w.policy})
    trainer = Trainer(Model.from_config(w.model, seed=0), spec, device=device)
    plan = trainer.plan_fit(w.x, w.y, args=FitArgs(batch_size=w.batch, epochs=w.epochs, seed=0))
    _sync(device)
    start = _clock()  # run_fit moves the arrays to the device: the loops' clocks include theirs
    trainer.run_fit(plan)
    _sync(device)
    return _since(start)


# -- hand-written loops ----------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _glorot(fan_in: int, fan_out: int, shape: tuple[int, ...], g: torch.Generator) -> Tensor:
    limit = (6 / (fan_in + fan_out)) ** 0.5
    return torch.empty(shape).uniform_(-limit, limit, generator=g)


def keras_adam(params: list[Tensor]) -> Callable[[int], None]:
    """Keras's Adam rule through `torch._foreach_*`, op for op as the engine runs it."""
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    like = params[0]
    lr = torch.tensor(LR, device=like.device)
    b1, b2 = torch.tensor(BETA_1, device=like.device), torch.tensor(BETA_2, device=like.device)

    def step(iteration: int) -> None:
        grads = [p.grad for p in params]
        with torch.no_grad():
            t = torch.full((), float(iteration + 1), device=like.device)
            alpha = lr * torch.sqrt(1 - torch.pow(b2, t)) / (1 - torch.pow(b1, t))
            torch._foreach_mul_(m, BETA_1)
            torch._foreach_add_(m, grads, alpha=1 - BETA_1)
            torch._foreach_mul_(v, BETA_2)
            torch._foreach_add_(v, torch._foreach_mul(grads, grads), alpha=1 - BETA_2)
            denominators = torch._foreach_sqrt(v)
            torch._foreach_add_(denominators, EPS)
            steps = torch._foreach_mul(m, alpha)
            torch._foreach_div_(steps, denominators)
            torch._foreach_add_(params, steps, alpha=-1)

    return step


class Net:
    """A workload's forward pass as plain tensors, for both hand-written loops: `same` ends in
    Keras's softmax or sigmoid, `plain` in logits."""

    def __init__(self, name: str, device: torch.device) -> None:
        g = torch.Generator().manual_seed(0)
        self.name = name
        if name == "mlp":
            shapes: list[tuple[int, ...]] = [
                (784, 256),
                (256,),
                (256, 128),
                (128,),
                (128, 10),
                (10,),
            ]
        elif name == "cnn":
            shapes = [(16, 1, 3, 3), (16,), (32, 16, 3, 3), (32,), (800, 10), (10,)]
        else:
            shapes = [(1000, 32), (32, 256), (64, 256), (256,), (64, 1), (1,)]
        ps = []
        for s in shapes:
            if len(s) == 1:
                t = torch.zeros(s)
            else:
                fan_in = int(np.prod(s[1:])) if len(s) == 4 else s[0]
                fan_out = s[0] if len(s) == 4 else s[-1]
                t = _glorot(fan_in, fan_out, s, g)
            ps.append(t.to(device).requires_grad_())
        self.params = ps

    def __call__(self, x: Tensor, same: bool, keras_layout: bool = False) -> Tensor:
        p = self.params
        if self.name == "cnn" and keras_layout:
            z = self._cnn_keras_layout(x)
        elif self.name == "mlp":
            h = torch.relu(torch.addmm(p[1], x, p[0]))
            h = torch.relu(torch.addmm(p[3], h, p[2]))
            z = torch.addmm(p[5], h, p[4])
        elif self.name == "cnn":  # x is channels-first (N, 1, 28, 28), laid out once up front
            h = F.max_pool2d(torch.relu(F.conv2d(x, p[0], p[1])), 2)
            h = F.max_pool2d(torch.relu(F.conv2d(h, p[2], p[3])), 2)
            z = torch.addmm(p[5], h.flatten(1), p[4])
        else:
            h = self._lstm(F.embedding(x, p[0]), same)
            z = torch.addmm(p[5], h, p[4])
        if not same:
            return z
        return torch.softmax(z, -1) if self.name != "lstm" else torch.sigmoid(z)

    def _cnn_keras_layout(self, x: Tensor) -> Tensor:
        """The CNN with x channels_last `(N, 28, 28, 1)` and the layout conversions Keras's
        torch backend makes (and the engine with it): each convolution permutes its input to
        channels-first laid out channels_last in memory, and adds the bias to its channels_last
        output; each pooling permutes its input to contiguous channels-first and back."""
        p = self.params

        def conv(h: Tensor, kernel: Tensor, bias: Tensor) -> Tensor:
            h = h.movedim(-1, 1).contiguous(memory_format=torch.channels_last)
            kernel = kernel.contiguous(memory_format=torch.channels_last)
            return F.conv2d(h, kernel).movedim(1, -1) + bias

        def pool(h: Tensor) -> Tensor:
            return F.max_pool2d(h.movedim(-1, 1).contiguous(), 2).movedim(1, -1)

        h = pool(torch.relu(conv(x, p[0], p[1])))
        h = pool(torch.relu(conv(h, p[2], p[3])))
        return torch.addmm(p[5], h.flatten(1), p[4])

    def _lstm(self, e: Tensor, same: bool) -> Tensor:
        kernel, rec, bias = self.params[1:4]
        if not same or e.is_cuda:  # torch's fused LSTM (the engine's path on CUDA)
            zeros = torch.zeros((1, e.shape[0], 64), device=e.device)
            weights = [kernel.T.contiguous(), rec.T.contiguous(), bias, torch.zeros_like(bias)]
            out, _, _ = torch.lstm(e, (zeros, zeros), weights, True, 1, 0.0, True, False, True)
            return out[:, -1]
        # Keras's CPU loop: the input projection with the bias, then the cell step by step.
        xs = (e.transpose(0, 1) @ kernel) + bias
        h = c = torch.zeros((e.shape[0], 64), device=e.device)
        for t in range(xs.shape[0]):
            z_i, z_f, z_c, z_o = torch.chunk(xs[t] + h @ rec, 4, dim=1)
            c = torch.sigmoid(z_f) * c + torch.sigmoid(z_i) * torch.tanh(z_c)
            h = torch.sigmoid(z_o) * torch.tanh(c)
        return h


def _same_loss(w: Workload, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Keras's loss (mean over the batch) and the batch's count of correct predictions."""
    if w.name == "lstm":
        clipped = torch.clip(out, EPS, 1 - EPS)
        loss = F.binary_cross_entropy(clipped, y, reduction="none").mean(-1).mean()
        return loss, ((out > 0.5).float() == y).float().sum()
    probs = out / torch.sum(out, dim=1, keepdim=True)
    loss = F.nll_loss(torch.log(torch.clip(probs, EPS, 1 - EPS)), y)
    return loss, (out.argmax(1) == y).float().sum()


def _plain_loss(w: Workload, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    if w.name == "lstm":
        loss = F.binary_cross_entropy_with_logits(out, y)
        return loss, ((out > 0).float() == y).float().sum()
    return F.cross_entropy(out, y), (out.argmax(1) == y).float().sum()


def raw_fit(w: Workload, device: torch.device, same: bool, keras_layout: bool = False) -> Timing:
    """Seconds of a hand-written loop: shuffled batches, the step, loss and accuracy summed on
    the device and read once per epoch. `keras_layout`: the CNN in Keras's memory layouts."""
    net = Net(w.name, device)
    _sync(device)
    start = _clock()
    x = torch.as_tensor(w.x, device=device)
    if w.name == "cnn" and not keras_layout:
        x = x.permute(0, 3, 1, 2).contiguous()
    elif w.name == "lstm":
        x = x.long()
    y = torch.as_tensor(w.y, device=device)
    y = y.long() if w.name != "lstm" else y
    if same:
        adam = keras_adam(net.params)
    else:
        opt = torch.optim.Adam(net.params, lr=LR, eps=EPS)
    loss_fn = _same_loss if same else _plain_loss
    gen = torch.Generator(device=device).manual_seed(0)
    half = HALF.get(w.policy)
    # mixed_float16: the loss scaled by Keras's LossScaleOptimizer's initial 2**15 (which these
    # fits are too short to change), the gradients unscaled before the step.
    scale = 2.0**15 if half is torch.float16 else None
    iteration = 0
    for _ in range(w.epochs):
        order = torch.randperm(w.rows, generator=gen, device=device)
        total = torch.zeros(2, device=device)
        for lo in range(0, w.rows, w.batch):
            idx = order[lo : lo + w.batch]
            yb = y[idx]
            with torch.autocast(device.type, dtype=half or torch.float32, enabled=half is not None):
                out = net(x[idx], same, keras_layout)
            loss, correct = loss_fn(w, out.float(), yb)
            for p in net.params:
                p.grad = None
            if scale is None:
                loss.backward()
            else:
                (loss * scale).backward()
                torch._foreach_div_([p.grad for p in net.params], scale)
            if same:
                adam(iteration)
            else:
                opt.step()
            iteration += 1
            with torch.no_grad():
                total[0] += loss.detach() * len(idx)
                total[1] += correct
        (total / w.rows).tolist()
    _sync(device)
    return _since(start)


def jit_fit(w: Workload, device: torch.device, repeats: int) -> dict[str, float]:
    """`jit_compile: true` beside eager on the same trainer setup: the first fit's seconds
    (torch.compile's tracing and code generation included) and the median samples/s of the
    fits after it (the compiled step reused), the eager fits interleaved with them."""

    def trainer(jit: bool) -> Trainer:
        spec = CompileSpec.parse({**w.compile, "jit_compile": jit})
        return Trainer(Model.from_config(w.model, seed=0), spec, device=device)

    def fit(t: Trainer) -> float:
        plan = t.plan_fit(w.x, w.y, args=FitArgs(batch_size=w.batch, epochs=w.epochs, seed=0))
        _sync(device)
        start = time.perf_counter()
        t.run_fit(plan)
        _sync(device)
        return time.perf_counter() - start

    jit, eager = trainer(True), trainer(False)
    first = fit(jit)
    fit(eager)
    runs: dict[str, list[float]] = {"jit": [], "eager": []}
    for _ in range(repeats):
        runs["jit"].append(fit(jit))
        runs["eager"].append(fit(eager))
    n = w.rows * w.epochs
    return {"first_s": first, "jit": n / statistics.median(runs["jit"]),
            "eager": n / statistics.median(runs["eager"])}  # fmt: skip


# -- the comparison --------------------------------------------------------------------------------
RUNNERS: dict[str, Callable[[Workload, torch.device], Timing]] = {
    "engine": engine_fit,
    "same": lambda w, d: raw_fit(w, d, same=True),
    "plain": lambda w, d: raw_fit(w, d, same=False),
}


def rates(w: Workload, device: torch.device, repeats: int) -> dict[str, float]:
    """Median samples/s of each runner (`<runner>`, by wall time, and `<runner>_cpu`, by this
    process's CPU time, which a shared machine's other load disturbs less), warmed up once, the
    repeats interleaved; for the CNN also the same-math loop in Keras's layouts (`layout`)."""
    runners = dict(RUNNERS)
    if w.name == "cnn":
        runners["layout"] = lambda w, d: raw_fit(w, d, same=True, keras_layout=True)
    for run in runners.values():
        run(w, device)
    times: dict[str, list[Timing]] = {k: [] for k in runners}
    for _ in range(repeats):
        for k, run in runners.items():
            times[k].append(run(w, device))
    n = w.rows * w.epochs
    rates = {k: n / statistics.median(t[0] for t in ts) for k, ts in times.items()}
    cpu = {f"{k}_cpu": n / statistics.median(t[1] for t in ts) for k, ts in times.items()}
    return {**rates, **cpu}


def measure(quick: bool = False, device: str | None = None, repeats: int = 3) -> list[Row]:
    """The rows of `python -m bench.run_all`: per workload, the engine beside the same-math
    loop (the goal) and the plain loop (on CUDA in float32, mixed_bfloat16 and mixed_float16),
    then `jit_compile: true` beside eager."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    repeats = 1 if quick else repeats
    rows: list[Row] = []
    policies = ["float32", *HALF] if dev.type == "cuda" else ["float32"]
    for policy in policies:
        for w in make_workloads(20 if quick else 1, {"mlp", "cnn", "lstm"}, policy):
            r = rates(w, dev, repeats)
            kind = dev.type if policy == "float32" else f"{dev.type}, {policy}"
            what = f"training, {WHAT[w.name]}, {kind}: samples/s"
            cpu = (f"by CPU time {r['engine_cpu'] / r['same_cpu']:.2f}x the same-math loop, "
                   f"{r['engine_cpu'] / r['plain_cpu']:.2f}x the plain loop")  # fmt: skip
            rows.append(Row(benchmark=what, ours=f"{r['engine']:,.0f}",
                            reference=f"same-math torch loop {r['same']:,.0f}",
                            ratio=r["engine"] / r["same"], goal=">= 0.95x", note=cpu))  # fmt: skip
            rows.append(Row(benchmark=what, ours=f"{r['engine']:,.0f}",
                            reference=f"plain torch loop {r['plain']:,.0f}",
                            ratio=r["engine"] / r["plain"], goal=""))  # fmt: skip
            if "layout" in r:
                rows.append(Row(benchmark=what, ours=f"{r['engine']:,.0f}",
                                reference=f"same-math loop in Keras's layouts {r['layout']:,.0f}",
                                ratio=r["engine"] / r["layout"], goal=""))  # fmt: skip
            print(f"{w.name} {policy}: {rows[-2]['ratio']:.2f}x same math, "
                  f"{rows[-1]['ratio']:.2f}x plain; {cpu}", flush=True)  # fmt: skip
    workloads = make_workloads(20 if quick else 1, {"mlp", "cnn", "lstm"})
    for w in workloads:
        if w.name == "lstm" and dev.type == "cpu":
            continue  # the Python loop over time steps: torch.compile unrolls all 40 of them
        j = jit_fit(w, dev, repeats)
        rows.append(Row(
            benchmark=f"`jit_compile: true`, {WHAT[w.name]}, {dev.type}: samples/s after the "
            "first fit", ours=f"{j['jit']:,.0f}", reference=f"eager {j['eager']:,.0f}",
            ratio=j["jit"] / j["eager"], goal=">= 1.0x",
            note=f"the first fit, compiling included, took {j['first_s']:.1f} s",
        ))  # fmt: skip
        print(f"{w.name} jit: {j['jit'] / j['eager']:.2f}x eager after a first fit of "
              f"{j['first_s']:.1f} s", flush=True)  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a few seconds' smoke run")
    parser.add_argument("--only", default="mlp,cnn,lstm")
    parser.add_argument(
        "--precision",
        default="float32",
        choices=["float32", *HALF],
        help="Keras's dtype policy; the hand-written loops autocast to match",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    repeats = 1 if args.quick else args.repeats
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"repeats={repeats}")  # fmt: skip
    print(f"{'workload':9} {'engine':>10} {'same math':>10} {'plain':>10} {'eng/same':>9} "
          f"{'eng/plain':>9} | by CPU time: {'eng/same':>9} {'eng/plain':>9}")  # fmt: skip
    rows = []
    for w in make_workloads(20 if args.quick else 1, set(args.only.split(",")), args.precision):
        r = rates(w, device, repeats)
        rows.append({"workload": w.name, **r})
        print(f"{w.name:9} {r['engine']:10,.0f} {r['same']:10,.0f} {r['plain']:10,.0f} "
              f"{r['engine'] / r['same']:8.2f}x {r['engine'] / r['plain']:8.2f}x | "
              f"{'':13}{r['engine_cpu'] / r['same_cpu']:8.2f}x "
              f"{r['engine_cpu'] / r['plain_cpu']:8.2f}x", flush=True)  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
