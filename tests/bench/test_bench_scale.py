"""The scale benchmark's database part on tiny sizes (no timing is asserted): it fills two
scratch databases, commits epoch rows in both, EXPLAINs the write path and drops them."""

from __future__ import annotations

import math
from collections.abc import Callable

from bench import bench_scale


def test_bench_scale_rows_runs_on_tiny_sizes(pg_database: Callable[[], str]) -> None:
    # pg_database: PostgreSQL must be up (a failure under CI=true, else a skip).
    result = bench_scale.run_rows((100, 500), writes=10, block=5)
    assert result.sizes == [100, 500]
    assert all(math.isfinite(m) and m > 0 for m in result.medians_ms + result.usage_ms)
    statements = " ".join(p.statement for p in result.plans)
    assert "UPDATE jobs" in statements and "INSERT INTO epoch_logs" in statements
    assert all("Scan" in p.plan or "Insert" in p.plan for p in result.plans)
    rows = bench_scale.rows_rows(result)
    assert [set(r) for r in rows] == [{"benchmark", "ours", "reference", "ratio", "goal"}] * 2
    assert isinstance(rows[0]["ratio"], float)
