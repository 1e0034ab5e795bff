"""The scenario on the embedded default: uvicorn with no DATABASE_URL and no REDIS_URL
(a SQLite file, a local artifact folder, the in-process executor)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.harness import start_embedded_api
from tests.e2e.scenario_checks import run_scenario

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("embedded")
    env = {"DATA_DIR": str(tmp / "data")}
    api, base = start_embedded_api(env, tmp)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            yield client
    finally:
        api.stop()
    assert (tmp / "data" / "fitapi.db").exists()


def test_scenario_on_the_embedded_default(embedded: httpx.Client) -> None:
    run_scenario(embedded)
