"""The dashboard as users see it: `spanlake dashboard` as a real process on the fixture warehouse,
every page opened in headless Chromium (Debian's, through Playwright), a screenshot of each."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from browser_support import launch, open_page, page_url, serve_dashboard, title, wait_for_page
from dashboard_support import build_warehouse, showcase_trace
from playwright.sync_api import sync_playwright

from spanlake.dashboard.pages import PAGES


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_warehouse(tmp_path_factory.mktemp("dashboard") / "wh")


def test_every_page_renders_in_a_browser(warehouse: str, tmp_path: Path) -> None:
    trace_id = showcase_trace(warehouse)
    with serve_dashboard(warehouse, tmp_path / "dashboard.log") as url, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            for _, heading, _, path in PAGES:
                query = {"trace_id": trace_id} if path == "trace" else {}
                shot = tmp_path / f"{path}.png"
                open_page(page, page_url(url, path, **query), heading, shot)
                assert shot.stat().st_size > 10_000, f"{shot} is too small to show the page"
        finally:
            browser.close()


def test_a_global_filter_survives_a_page_change(warehouse: str, tmp_path: Path) -> None:
    with serve_dashboard(warehouse, tmp_path / "dashboard.log") as url, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            open_page(page, page_url(url, "overview", range="7d"), title("overview"), tmp_path / "before.png")
            page.locator("[data-testid=stSidebarNav] a", has_text=title("traces")).click()
            wait_for_page(page, title("traces"))
            address = urlsplit(page.url)
            assert address.path == "/traces"
            assert parse_qs(address.query).get("range") == ["7d"], page.url
            assert page.get_by_role("combobox", name="Time range").input_value() == "7d"
        finally:
            browser.close()
