"""The training benchmark runs: its three loops on tiny workloads (no timing is asserted)."""

from __future__ import annotations

import math

import torch

from bench import bench_train


def test_bench_train_runs_every_loop_on_tiny_workloads() -> None:
    workloads = bench_train.make_workloads(200, {"mlp", "cnn", "lstm"})
    assert [w.name for w in workloads] == ["mlp", "cnn", "lstm"]
    for w in workloads:
        w.epochs = 1
        rates = bench_train.rates(w, torch.device("cpu"), repeats=1)
        runners = {"engine", "same", "plain"} | ({"layout"} if w.name == "cnn" else set())
        assert set(rates) == runners | {f"{k}_cpu" for k in runners}
        assert all(math.isfinite(r) and r > 0 for r in rates.values())


def test_bench_train_quick_prints_a_row_per_workload(capsys) -> None:  # type: ignore[no-untyped-def]
    rows = bench_train.main(["--quick", "--device", "cpu", "--only", "lstm"])
    assert [r["workload"] for r in rows] == ["lstm"]
    assert "eng/same" in capsys.readouterr().out


def test_bench_train_runs_the_mixed_precision_loops() -> None:
    """The loops autocast as the engine's policy computes (on CUDA, run_all measures both)."""
    for policy in ("mixed_bfloat16", "mixed_float16"):
        (w,) = bench_train.make_workloads(300, {"mlp"}, policy)
        w.epochs = 1
        rates = bench_train.rates(w, torch.device("cpu"), repeats=1)
        assert all(math.isfinite(r) and r > 0 for r in rates.values())
