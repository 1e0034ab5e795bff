"""The predict-serving benchmark runs: fitapi and the minimal endpoint started, the same
predictions checked, a few requests at each concurrency (no timing is asserted)."""

from __future__ import annotations

import math

import pytest

from bench import bench_predict

pytestmark = pytest.mark.e2e


def test_bench_predict_quick_measures_both_servers_and_prints_the_ratios(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = bench_predict.main(["--quick", "--requests", "12"])
    assert len(rows) == 6
    assert {r["goal"] for r in rows} == {"<= 1.5x", ">= 0.7x", "reported"}
    assert all(math.isfinite(r["ratio"]) and r["ratio"] > 0 for r in rows)
    assert "fitapi p50" in capsys.readouterr().out
