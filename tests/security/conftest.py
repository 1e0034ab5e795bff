"""Every security test is bounded in time (pytest-timeout): a request that hangs fails its test
with the stacks of every thread instead of stalling the suite."""

from __future__ import annotations

import pytest

# Seconds per test: generous for a few requests on a slow 2-core machine, short of a hang.
TEST_TIMEOUT_S = 180


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/security/" in item.nodeid.replace("\\", "/") and not item.get_closest_marker(
            "timeout"
        ):
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))
