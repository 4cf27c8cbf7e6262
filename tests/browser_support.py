"""The dashboard in a real browser: `spanlake dashboard` as its own process, and Playwright driving
Debian's chromium (Playwright's browser download cannot work here; `make browser` installs it).
Used by tests/test_dashboard_browser.py and docs/screenshots.py.

Waiting follows Streamlit's own e2e suite (e2e_playwright conftest): the health endpoint, the app
container, an element of the page itself, then the script run over: stApp's
data-test-script-state "notRunning" and no skeleton (a chart still drawing) for QUIET seconds in
a row, since a bound widget can start another run. (The status widget the e2e suite also
watches never renders with `--client.toolbarMode minimal`: observed with streamlit 1.67.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

from playwright.sync_api import Browser, Page, Playwright
from support import SPANLAKE

from spanlake.broker import free_port
from spanlake.dashboard.pages import PAGES

INSTALL = "make browser (as root: apt-get install -y chromium)"
START_TIMEOUT = 60.0  # seconds: the server imports Streamlit, Polars and the app
RUN_TIMEOUT = 60_000  # ms: a page's first run imports Polars and reads the tables
QUIET = 1.0  # seconds the page must stay idle: a rerun can start after a first check


def chromium() -> str:
    """The system chromium's path; an AssertionError naming the install command when it is missing."""
    path = shutil.which("chromium")
    assert path, f"chromium is not installed: run `{INSTALL}`"
    return path


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])


@contextmanager
def serve_dashboard(warehouse: str, log: Path) -> Iterator[str]:
    """`spanlake dashboard` on `warehouse` on a free port; yields its base URL, stops it afterwards.

    It runs in a session of its own, so one SIGINT (Ctrl-C) reaches both spanlake and the
    streamlit process it starts."""
    port = free_port()
    with log.open("w") as out:
        server = subprocess.Popen([SPANLAKE, "dashboard", "--port", str(port), "--warehouse", warehouse],
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        url = f"http://localhost:{port}"
        _wait_healthy(url, server, log)
        yield url
    finally:
        _stop(server)


def _wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"spanlake dashboard exited with {server.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"spanlake dashboard not healthy after {START_TIMEOUT}s: {log.read_text()[-2000:]}")


def _stop(server: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        try:
            server.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def page_url(base: str, url_path: str, **query: str) -> str:
    """The address of a page: Streamlit serves the default (first) page at the root, not its url_path."""
    path = "" if url_path == PAGES[0][3] else url_path
    return f"{base}/{path}" + ("?" + urlencode(query) if query else "")


def title(url_path: str) -> str:
    """The title of the page at `url_path`, as PAGES names it (each page's st.title)."""
    return next(t for _, t, _, path in PAGES if path == url_path)


def wait_for_page(page: Page, heading: str) -> None:
    """Wait until the app rendered the page titled `heading` and its script run is over."""
    page.wait_for_selector("[data-testid=stAppViewContainer]", state="attached", timeout=RUN_TIMEOUT)
    page.locator("[data-testid=stMain] h1", has_text=heading).first.wait_for(timeout=RUN_TIMEOUT)
    app, skeletons = page.locator("[data-testid=stApp]"), page.locator("[data-testid=stSkeleton]")
    deadline = time.monotonic() + RUN_TIMEOUT / 1000
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < QUIET:
        assert time.monotonic() < deadline, f"page {heading!r} still running after {RUN_TIMEOUT / 1000:.0f}s"
        if app.get_attribute("data-test-script-state") != "notRunning" or skeletons.count():
            quiet_since = time.monotonic()
        page.wait_for_timeout(100)


def problems(page: Page) -> list[str]:
    """The exceptions and error boxes the page shows (empty when it rendered cleanly)."""
    found = page.locator("[data-testid=stException], [data-testid=stAlertContentError]").or_(
        page.get_by_role("dialog").filter(has_text="Page not found"))  # a wrong url_path runs the main page
    return [found.nth(i).inner_text()[:500] for i in range(found.count())]


def open_page(page: Page, url: str, heading: str, shot: Path) -> None:
    """Go to `url`, wait for the page titled `heading`, fail on an exception or error it shows, and
    save a screenshot to `shot` (also when it fails: what the browser showed)."""
    page.goto(url)
    try:
        wait_for_page(page, heading)
        shown = problems(page)
        assert not shown, f"{url} shows errors: {shown}"
    finally:
        page.screenshot(path=shot)
