"""The dashboard (/ui) in a real browser against a real server on the embedded default: a running
job's chart gains points as epochs land, progress and checkpoints show, cancel and resume work,
and with keys on the page asks for one and then works. Saves the README's screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import OfflinePage
from tests.e2e.harness import poll, start_embedded_api
from tests.e2e.scenario_checks import wait_for
from tests.support import scenario

pytestmark = pytest.mark.e2e


def _serve(tmp: Path) -> Iterator[httpx.Client]:
    # A checkpoint every second, so the job page lists some while the slow fit runs; streams
    # that end after 3 s, so the page must reconnect (with Last-Event-ID) to keep up.
    env = {"DATA_DIR": str(tmp / "data"), "CHECKPOINT_EVERY_S": "1", "EVENTS_MAX_S": "3"}
    api, base = start_embedded_api(env, tmp)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            yield client
    finally:
        api.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    yield from _serve(tmp_path_factory.mktemp("dashboard"))


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str]]:
    """A second server whose first key (made while it is single-user) turns keys on."""
    for client in _serve(tmp_path_factory.mktemp("dashboard-keyed")):
        r = client.post("/v1/admin/keys", json={"project": "lab", "role": "admin"})
        assert r.status_code == 201, r.text
        assert client.get("/v1/models").status_code == 401
        yield client, r.json()["token"]


def start_fit(client: httpx.Client, *, epochs: int, batch_size: int, **headers: str) -> dict:
    r = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 3, "name": "threshold"},
                    headers=headers)  # fmt: skip
    assert r.status_code == 201, r.text
    body = scenario.fit_body(epochs=epochs, batch_size=batch_size, callbacks=[],
                             validation_split=0.2)  # fmt: skip
    del body["validation_data"]
    r = client.post(f"/v1/models/{r.json()['id']}/fit", json=body, headers=headers)
    assert r.status_code == 202, r.text
    job: dict = r.json()
    return job


def alert_free(page: Any) -> bool:
    """True; an error the page shows fails the test with its text instead of a timeout."""
    shown = page.query_selector("[role=alert]")
    assert shown is None, shown.inner_text()
    return True


def reconnected(page: Any, streams: list[str | None]) -> str | None:
    """The Last-Event-ID of the latest stream request once there has been more than one."""
    page.wait_for_timeout(50)  # Playwright delivers the request events while it waits
    return streams[-1] if len(streams) > 1 else None


def points(page: Any) -> int:
    return int(page.get_attribute("#charts", "data-points") or 0)


def test_a_running_jobs_chart_gains_points_as_epochs_land(
    server: httpx.Client, offline_page: OfflinePage
) -> None:
    # Small batches make each epoch take a moment, so the page sees them arrive one by one.
    job = start_fit(server, epochs=2000, batch_size=2)
    try:
        page = offline_page.page
        streams: list[str | None] = []  # each event-stream request's Last-Event-ID
        page.on("request", lambda request: streams.append(request.headers.get("last-event-id"))
                if request.url.endswith("/events") else None)  # fmt: skip
        page.goto(f"{server.base_url}/ui#/jobs/{job['id']}")
        first = poll(lambda: points(page) or None, "the first epoch on the chart", timeout=60)
        second = poll(lambda: points(page) > first and points(page), "a second epoch", timeout=60)
        poll(lambda: points(page) > second, "a third epoch", timeout=60)
        # The stream ended (EVENTS_MAX_S) and the page picked it up after the last epoch it had.
        resumed_at = poll(lambda: reconnected(page, streams), "a reconnect", timeout=60)
        assert streams[0] is None and int(resumed_at) >= 0
        poll(lambda: points(page) > int(resumed_at) + 1, "an epoch after the reconnect", timeout=60)
        rows = page.eval_on_selector_all("#epoch-table tbody tr", "rows => rows.length")
        epochs = server.get(f"/v1/jobs/{job['id']}/logs").json()["items"]
        assert rows <= len(epochs)  # one row per epoch: nothing doubled by the reconnect

        # Training beside validation: one chart per metric, each with both series in its legend.
        metrics = page.eval_on_selector_all(".chart", "boxes => boxes.map(b => b.dataset.metric)")
        assert metrics == ["loss", "accuracy"]
        legend = page.text_content(".chart[data-metric=loss] .u-legend") or ""
        assert "training (loss)" in legend and "validation (val_loss)" in legend
        headings = page.eval_on_selector_all(
            "#epoch-table th", "cells => cells.map(c => c.textContent)"
        )
        assert headings == ["epoch", "attempt", "accuracy", "loss", "val_accuracy", "val_loss"]
        poll(lambda: "batch" in page.inner_text("#progress-text"), "the batch progress bar")
        poll(lambda: page.query_selector("[data-download='model.keras']"), "a checkpoint listed")
        offline_page.screenshot("dashboard-job.png")

        # Cancel from the page; then resume the cancelled job, which opens the new job's page.
        page.click("#cancel")
        poll(lambda: page.get_attribute(".job-header", "data-status") == "cancelled",
             "the page showing the job cancelled")  # fmt: skip
        wait_for(server, job["id"], {"cancelled"})
        page.click("#resume")
        poll(lambda: alert_free(page) and job["id"] not in page.url, "the resumed job's page")
        resumed = page.url.rsplit("/", 1)[1]
        assert server.get(f"/v1/jobs/{resumed}").json()["parent_job_id"] == job["id"]
        server.post(f"/v1/jobs/{resumed}/cancel")
        wait_for(server, resumed, {"cancelled"})
    finally:  # the in-process executor runs one job at a time: stop this one whatever happens
        server.post(f"/v1/jobs/{job['id']}/cancel")
    assert offline_page.blocked == []
    assert offline_page.errors == []


def test_the_jobs_and_models_lists_show_status_and_link_to_jobs(
    server: httpx.Client, offline_page: OfflinePage
) -> None:
    job = start_fit(server, epochs=3, batch_size=128)
    wait_for(server, job["id"], {"succeeded"})
    page = offline_page.page
    page.goto(f"{server.base_url}/ui")
    row = page.wait_for_selector(f"tr[data-job='{job['id']}']")
    assert "succeeded" in row.inner_text()
    offline_page.screenshot("dashboard-jobs.png")
    page.click("[data-nav=models]")
    model = page.wait_for_selector(f"tr[data-model='{job['model_id']}']")
    assert "threshold" in model.inner_text()
    model.query_selector("a").click()  # the model's jobs
    page.wait_for_selector(f"text=Jobs of model {job['model_id'][:8]}")
    page.click(f"tr[data-job='{job['id']}'] a[href='#/jobs/{job['id']}']")
    poll(lambda: points(page) == 3, "the finished job's three epochs on its chart")
    assert page.get_attribute(".job-header", "data-status") == "succeeded"
    assert page.is_disabled("#cancel") and page.is_enabled("#resume")
    assert offline_page.blocked == []
    assert offline_page.errors == []


def test_with_keys_on_the_page_asks_for_one_then_works(
    keyed: tuple[httpx.Client, str], offline_page: OfflinePage, tmp_path: Path
) -> None:
    client, token = keyed
    auth = {"Authorization": f"Bearer {token}"}
    job = start_fit(client, epochs=3, batch_size=128, **auth)
    poll(lambda: client.get(f"/v1/jobs/{job['id']}", headers=auth).json()["status"] == "succeeded",
         "the keyed job succeeding")  # fmt: skip
    page = offline_page.page
    page.goto(f"{client.base_url}/ui#/jobs/{job['id']}")
    page.wait_for_selector("#key-panel:not([hidden])")
    assert "needs an API key" in page.inner_text("#key-message")

    page.fill("#key-input", "fitapi_not_a_key")
    page.click("#key-form button[type=submit]")
    poll(lambda: "refused" in page.inner_text("#key-message"), "a wrong key refused")

    page.fill("#key-input", token)
    page.click("#key-form button[type=submit]")
    poll(lambda: points(page) == 3, "the job's epochs on its chart once the key is in")
    assert page.is_hidden("#key-panel")

    # The key is held for the tab: other pages and a reload need no second entry.
    page.reload()
    poll(lambda: points(page) == 3, "the chart again after a reload")
    with page.expect_download() as download:
        page.click("[data-download='model.keras'] >> nth=0")
    saved = tmp_path / "model.keras"
    download.value.save_as(saved)
    assert saved.read_bytes()[:2] == b"PK"  # a .keras file is a zip
    assert offline_page.blocked == []
    assert offline_page.errors == []
