"""The dashboard's files (app.api.routes.ui): served without a key, with JavaScript and CSS
types, the dashboard's own Content-Security-Policy, nothing inline that the policy would block,
nothing from another host, and all of them shipped as package data."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.routes.ui import STATIC, UI_DIR, UPLOT_DIR
from app.api.security_headers import API_CSP, UI_CSP
from app.core.config import Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parents[2]
ASSETS = {
    "/ui/": "text/html",
    "/ui/app.js": "text/javascript",
    "/ui/api.js": "text/javascript",
    "/ui/charts.js": "text/javascript",
    "/ui/dom.js": "text/javascript",
    "/ui/job.js": "text/javascript",
    "/ui/style.css": "text/css",
    "/ui/vendor/uplot/uPlot.iife.min.js": "text/javascript",
    "/ui/vendor/uplot/uPlot.min.css": "text/css",
}


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[TestClient]:
    """Keys required: the dashboard's files must still be served."""
    settings = Settings(data_dir=tmp_path, database_url=None, redis_url=None, auth_required=True)
    with TestClient(create_app(settings)) as c:
        yield c


def test_ui_redirects_to_its_page_relatively(keyed: TestClient) -> None:
    r = keyed.get("/ui", follow_redirects=False)
    assert r.status_code == 307
    assert r.headers["location"] == "ui/"  # relative: right under a root path too
    assert r.headers["content-security-policy"] == UI_CSP


@pytest.mark.parametrize(("path", "media_type"), sorted(ASSETS.items()))
def test_each_file_is_served_without_a_key_with_its_type_and_policy(
    keyed: TestClient, path: str, media_type: str
) -> None:
    r = keyed.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].split(";")[0] == media_type
    assert r.headers["content-security-policy"] == UI_CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["etag"]
    # The data stays behind the key.
    assert keyed.get("/v1/jobs").status_code == 401


def test_the_policy_allows_this_origin_only_and_nothing_inline() -> None:
    directives = dict(part.split(" ", 1) for part in UI_CSP.split("; "))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'", name
    assert directives["img-src"] == "'self' data:"
    assert "unsafe" not in UI_CSP


def test_other_paths_keep_the_api_policy(keyed: TestClient) -> None:
    assert keyed.get("/healthz").headers["content-security-policy"] == API_CSP
    assert keyed.get("/uix").headers["content-security-policy"] == API_CSP


@pytest.mark.parametrize("path", ["/ui/missing.js", "/ui/..%2Fmain.py", "/ui/vendor/uplot/x"])
def test_unknown_and_escaping_paths_are_404s(keyed: TestClient, path: str) -> None:
    r = keyed.get(path)
    assert r.status_code == 404
    assert r.json()["detail"][0]["type"]


def test_the_page_has_no_inline_script_or_style_and_no_other_host() -> None:
    page = (UI_DIR / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == []
    assert "<style" not in page and " style=" not in page
    assert re.findall(r"\son\w+=", page) == []  # no inline handlers
    for name in re.findall(r'(?:src|href)="([^"#]+)"', page):
        if name.startswith("data:"):
            continue
        assert "//" not in name, name
        assert (UI_DIR / name).is_file() or (STATIC / name).is_file(), name
    for script in UI_DIR.glob("*.js"):
        text = script.read_text()
        assert "http://" not in text and "https://" not in text, script.name
        assert "innerHTML" not in text, script.name  # elements are built from data
        for module in re.findall(r'from "\./([\w.]+)"', text):
            assert (UI_DIR / module).is_file(), f"{script.name} imports {module}"


def test_uplot_is_vendored_with_its_licence_and_version() -> None:
    assert "MIT License" in (UPLOT_DIR / "LICENSE").read_text()
    version = (UPLOT_DIR / "VERSION").read_text()
    assert "package: uplot" in version and "version: 1.6.32" in version
    assert "(v1.6.32)" in (UPLOT_DIR / "uPlot.iife.min.js").read_text()[:100]


def test_every_dashboard_file_ships_as_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["app.api"]
    package = ROOT / "app" / "api"
    files = [p for d in (UI_DIR, UPLOT_DIR) for p in d.iterdir() if p.is_file()]
    assert files
    for path in files:
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch(relative, g) for g in globs), relative


def test_other_methods_are_answered_with_what_the_files_allow(keyed: TestClient) -> None:
    r = keyed.options("/ui/app.js")
    assert r.status_code == 204
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"
    r = keyed.post("/ui/app.js", json={})
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"
    assert r.json()["detail"][0]["type"] == "method_not_allowed"
    assert keyed.head("/ui/app.js").status_code == 200
