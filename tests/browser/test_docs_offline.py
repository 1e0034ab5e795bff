"""/docs and /redoc in a real browser with every host but this one blocked: the vendored Swagger
UI and ReDoc load, every operation of the OpenAPI document renders, nothing was requested from
another host, and the pages' Content-Security-Policy refused nothing. Screenshots go to
docs/screenshots (docs.png, redoc.png)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OfflinePage
from tests.e2e.harness import start_api

pytestmark = pytest.mark.e2e
METHODS = {"get", "put", "post", "delete", "patch"}
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real uvicorn on the embedded default; the base URL and the number of operations."""
    tmp: Path = tmp_path_factory.mktemp("docs")
    env = {"DATA_DIR": str(tmp / "data"), "DATABASE_URL": "", "REDIS_URL": ""}
    api, base = start_api(env, tmp)
    try:
        spec = httpx.get(f"{base}/openapi.json", timeout=30).json()
        count = sum(1 for item in spec["paths"].values() for m in item if m in METHODS)
        yield base, count
    finally:
        api.stop()


def _watch_console(page: OfflinePage) -> list[str]:
    refused: list[str] = []

    def seen(message: Any) -> None:
        if message.type == "error":
            refused.append(message.text)

    page.page.on("console", seen)
    return refused


def test_swagger_ui_renders_every_operation_offline(
    server: tuple[str, int], offline_page: OfflinePage
) -> None:
    base, count = server
    console = _watch_console(offline_page)
    page = offline_page.page
    page.goto(f"{base}/docs")
    # Locator waits, not wait_for_function: the page's CSP forbids evaluating strings.
    expect(page.locator(".opblock")).to_have_count(count, timeout=60_000)
    assert page.locator("#operations-models-create_model").count() == 1  # tag, operationId
    assert page.locator(".btn.authorize").is_visible()
    # The single-user note of the OpenAPI description shows on the page.
    assert "Single-user mode" in page.locator(".information-container").inner_text()
    offline_page.screenshot("docs.png")
    assert offline_page.blocked == []
    assert offline_page.errors == []
    assert not [m for m in console if "Content Security Policy" in m], console


def test_swagger_ui_authorize_takes_a_bearer_key(
    server: tuple[str, int], offline_page: OfflinePage
) -> None:
    base, _ = server
    page = offline_page.page
    page.goto(f"{base}/docs")
    page.locator(".btn.authorize").click()
    dialog = page.locator(".modal-ux")
    dialog.wait_for(timeout=30_000)
    assert "(http, Bearer)" in dialog.inner_text()
    dialog.locator("input").first.fill("fitapi_example_key")
    dialog.locator("button", has_text="Authorize").click()
    dialog.locator("button", has_text="Logout").wait_for(timeout=10_000)  # authorized
    dialog.locator("button", has_text="Close").click()
    # "Try it out" on a listing sends the key as a bearer token (shown in its curl line).
    operation = page.locator("#operations-models-list_models")
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    operation.locator(".execute").click()
    curl = operation.locator(".curl-command")
    curl.wait_for(timeout=30_000)
    assert "Authorization: Bearer fitapi_example_key" in curl.inner_text()
    assert offline_page.blocked == [] and offline_page.errors == []


def test_redoc_renders_every_operation_offline(
    server: tuple[str, int], offline_page: OfflinePage
) -> None:
    base, count = server
    console = _watch_console(offline_page)
    page = offline_page.page
    page.goto(f"{base}/redoc")
    selector = "[data-section-id*='operation/']"
    page.locator(selector).nth(count - 1).wait_for(state="attached", timeout=60_000)
    sections = page.eval_on_selector_all(
        selector, "els => els.map(e => e.getAttribute('data-section-id'))"
    )
    assert len({s.rsplit("/", 1)[-1] for s in sections}) == count
    offline_page.screenshot("redoc.png")
    assert offline_page.blocked == []
    assert offline_page.errors == []
    # ReDoc's sidebar credit always names its logo on cdn.redoc.ly: the policy refuses it before
    # any request leaves (so it is not in `blocked`) and ReDoc drops the image. Nothing else.
    refused = [m for m in console if "Content Security Policy" in m]
    assert all(REDOC_LOGO in m and "img-src" in m for m in refused), refused
