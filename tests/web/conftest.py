"""The workspace as a browser meets it: the API served by uvicorn on a free loopback port, and
Debian's Chromium driven by Playwright (``/usr/bin/chromium``; ``playwright install`` is never
run, it would download a browser of its own).

One server and one browser for the session keep the browser tests to one start of each (the
browser tests share an xdist group, so one worker runs them all); each test logs in with a fresh
browser context (cookies of its own). Screenshots go under the test's tmp folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.service.conftest import keys, settings  # noqa: F401  (fixtures, on both databases)
from tests.support.components import missing, require_tool
from tests.support.service import database_settings, make_keys, serving
from workers.config import Settings

AXE = Path(__file__).parent / "assets" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
VIEWPORT = {"width": 1440, "height": 900}


@dataclass
class LiveServer:
    """The app on loopback, its settings, and a key per role."""

    url: str
    settings: Settings
    keys: dict[str, str]


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("web") / "data"
    with database_settings("sqlite", data, None) as configured, serving(configured) as url:
        yield LiveServer(url, configured, make_keys(configured))


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    chromium = require_tool("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (Python)", "install the dev dependencies: make venv")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


def new_page(browser: Any, server: LiveServer, role: str) -> Any:
    """A fresh browser context, logged in as the user of ``role`` through the login form."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(f"{server.url}/app/")
    page.wait_for_url("**/app/login**")
    page.get_by_label("API key").fill(server.keys[role])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    return page


def check_accessibility(page: Any) -> None:
    """axe-core's WCAG 2.1 A/AA rules on the page as it stands: no serious or critical issue.

    axe is evaluated through the DevTools protocol, which the page's CSP does not govern (an
    added script tag would be refused, as it should be).
    """
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_TAGS
    )
    serious = [
        (v["id"], v["help"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], serious


def screenshot(page: Any, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
