"""Schemathesis over the OpenAPI document, against a real uvicorn server on the embedded default
with authentication required and an admin key: for a bounded number of generated requests per
operation, no server error and no response that breaks the documented schema."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.e2e.harness import ROOT, start_api

# Enough to reach every operation's validation and error paths; the suite's time stays bounded.
EXAMPLES = 12
KEY: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    env = {"DATA_DIR": str(tmp / "data"), "AUTH_REQUIRED": "true", "QUOTA_REQUESTS_PER_S": "0",
           "DATABASE_URL": "", "REDIS_URL": "", "MAX_REQUEST_BYTES": "2000000"}  # fmt: skip
    made = subprocess.run(
        [sys.executable, "-m", "app.admin", "keys", "create", "--project", "fuzz", "--role",
         "admin"], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    KEY["Authorization"] = f"Bearer {made.stdout.strip().splitlines()[-1]}"
    api, base = start_api(env, tmp)
    try:
        yield schemathesis.openapi.from_url(f"{base}/openapi.json", headers=KEY)
    finally:
        api.stop()


def test_no_server_error_and_no_schema_violation(api_schema: Any) -> None:
    """Every operation, each with its own bounded Hypothesis run; failures are collected so one
    run names every operation that fails."""
    failures: list[str] = []
    operations = 0
    statuses: list[int] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def run(case: Any) -> None:
            response = case.call_and_validate(
                headers=KEY, timeout=60, checks=[not_a_server_error, response_schema_conformance]
            )
            statuses.append(response.status_code)

        try:
            run()
        except Exception as exc:  # reported with the operation's name
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:2000])
    assert operations >= 37 and len(statuses) >= 3 * operations
    # Generated requests reach past authentication and validation into the routes.
    assert {200, 404, 422} <= set(statuses), sorted(set(statuses))
    assert not failures, "\n\n".join(failures)
