"""The Python client against uvicorn with a real Celery worker, on Postgres and Redis: the seed
scenario equals its raw HTTP run (its evaluate and predict run as jobs here), and a background
fit is cancelled through the worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import fitapi
import pytest

from tests.client.flows import check_same_as_raw
from tests.client.servers import distributed_server
from tests.e2e.harness import poll
from tests.support import scenario

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def base(
    pg_database: Callable[[], str], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("client-distributed")
    with distributed_server(tmp, pg_database(), redis_url) as url:
        yield url


def test_the_seed_scenario_through_a_worker(base: str) -> None:
    with fitapi.Client(base) as client:
        check_same_as_raw(client, base)
        model = client.models.list()[0]
        r = client.request("POST", f"/v1/models/{model.id}/predict", json={"x": [[0.0]] * 101})
        assert r.status_code == 202, "predict of 101 rows should have run as a job here"
        history = fitapi.Job(client, r.json()).wait(verbose=0)
        assert history.history == {} and history.epoch == []


def test_a_background_fit_is_cancelled_through_the_worker(base: str) -> None:
    with fitapi.Client(base) as client:
        model = client.models.create(scenario.MODEL, seed=2)
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        job = model.fit(scenario.X, scenario.Y, epochs=10_000, wait=False)
        assert isinstance(job, fitapi.Job)
        poll(lambda: job.refresh().raw["epochs_done"] >= 2, "two epochs")
        job.cancel()
        with pytest.raises(fitapi.JobCancelled):
            job.wait(verbose=0)
        assert job.history.epoch == list(range(job.raw["epochs_done"]))
        assert set(job.history.history) == {"accuracy", "loss"}
