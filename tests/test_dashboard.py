"""The dashboard's pages under streamlit.testing.v1.AppTest, against a fixture warehouse written
by the real ingest and jobs code (tests/dashboard_support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dashboard_support import build_warehouse
from streamlit.testing.v1 import AppTest

from spanlake.cli.dashboard import app_path
from spanlake.dashboard import units
from spanlake.tables import scan

TIMEOUT = 60  # the first run imports Polars and reads the tables


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_warehouse(tmp_path_factory.mktemp("dashboard") / "wh")


@pytest.fixture
def app(warehouse: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SPANLAKE_WAREHOUSE", warehouse)

    def run(page: str | None = None, **query: str) -> AppTest:
        at = AppTest.from_file(str(app_path()), default_timeout=TIMEOUT)
        for key, value in query.items():
            at.query_params[key] = value
        at.run()
        if page:
            at.switch_page(str(Path("views") / page)).run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return run


def test_overview_shows_the_tables_numbers(app, warehouse: str) -> None:
    at = app(range="all")
    metrics = {m.label: m.value for m in at.metric}
    info = scan("trace_info", warehouse=warehouse).collect()
    assert metrics["Requests"] == units.count(info.height)
    assert metrics["Error rate"] == units.percent((info["state"] == "ERROR").mean())
    assert metrics["p95 latency"] == units.duration(info["duration_ms"].quantile(0.95))
    assert metrics["Tokens"] == units.count(info["total_tokens"].sum())


def test_an_empty_warehouse_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANLAKE_WAREHOUSE", str(tmp_path / "empty"))
    at = AppTest.from_file(str(app_path()), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert any("spanlake ingest" in i.value for i in at.info)
