"""Overview, Traces and Sessions and users under AppTest, against fixture warehouses written by the
real ingest and jobs code (tests/dashboard_support.py): what each page shows equals a Polars
computation on the tables, and the Traces and Sessions state round-trips through the URL."""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from dashboard_support import build_warehouse
from deltalake import write_deltalake
from streamlit.testing.v1 import AppTest

from spanlake.cli.dashboard import app_path
from spanlake.dashboard import units
from spanlake.query import scan_assessments
from spanlake.tables import scan, table_uri
from spanlake.tables.delta import open_or_create
from spanlake.tables.schemas import ALERTS

TIMEOUT = 60  # the first run imports Polars and reads the tables
PAGE = 50  # the Traces page's page size


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_warehouse(tmp_path_factory.mktemp("dashboard_a") / "wh")


def _run(page: str | None, query: dict[str, str | list[str]], state: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(app_path()), default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    if page:
        at.switch_page(str(Path("views") / page))
        for key, value in (state or {}).items():
            at.session_state[key] = value
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def app(warehouse: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SPANLAKE_WAREHOUSE", warehouse)
    return lambda page=None, state=None, **query: _run(page, query, state)


def _traces(warehouse: str) -> pl.DataFrame:
    return scan("trace_info", warehouse=warehouse).collect()


def _shown_ids(at: AppTest) -> list[str]:
    return at.dataframe(key="traces_table").value["trace_id"].tolist()


def _minute() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)


# --- Overview ---------------------------------------------------------------------------


def test_overview_cost_failures_and_slowest_equal_the_tables(app, warehouse: str) -> None:
    at = app(range="all")
    info = _traces(warehouse)
    rollups = scan("cost_rollups", warehouse=warehouse).collect()
    app_days = rollups.filter((pl.col("kind") == "app") & (pl.col("window") == "day"))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Cost"] == units.usd(app_days["cost_usd"].sum())
    assert metrics["p99 latency"] == units.duration(info["duration_ms"].quantile(0.99))
    assert len(at.get("arrow_vega_lite_chart")) + len(at.get("vega_lite_chart")) == 5  # requests .. cost

    failing = (
        info.group_by("root_span_name")
        .agg(errors=(pl.col("state") == "ERROR").sum(), requests=pl.len())
        .filter(pl.col("errors") > 0)
        .with_columns(rate=pl.col("errors") / pl.col("requests"))
        .sort(["errors", "rate", "root_span_name"], descending=[True, True, False])
        .head(10)
    )
    tables = at.dataframe
    shown = tables[0].value
    assert shown["root_span"].tolist() == failing["root_span_name"].to_list()
    assert shown["errors"].tolist() == failing["errors"].to_list()
    assert shown["error_rate"].tolist() == [units.percent(r) for r in failing["rate"]]

    services = info.group_by("service_name").agg(p95=pl.col("duration_ms").quantile(0.95)).sort("p95", descending=True)
    assert tables[1].value["service"].tolist() == services["service_name"].to_list()
    assert tables[1].value["p95"].tolist() == [units.duration(v) for v in services["p95"]]
    models = (
        info.explode("models").drop_nulls("models").group_by("models")
        .agg(p95=pl.col("duration_ms").quantile(0.95), n=pl.len()).sort("p95", "n", descending=True).head(10)
    )  # fmt: skip
    assert tables[2].value["model"].tolist() == models["models"].to_list()
    assert [c.value for c in at.caption] == ["No monitors configured."]  # quiet: no job_never_ran notice
    assert not at.info


@pytest.fixture(scope="module")
def split_warehouse(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Traces spread over the hour from 6.5 h ago: the 6h range and the period before it both hold some."""
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=6, minutes=30)
    return build_warehouse(tmp_path_factory.mktemp("dashboard_a_split") / "wh", traces=200, start=start)


def test_overview_compares_with_the_previous_period(split_warehouse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANLAKE_WAREHOUSE", split_warehouse)
    info = _traces(split_warehouse)
    for _ in range(3):  # the range ends at the current minute: retry if the minute turned meanwhile
        before = _minute()
        at = _run(None, {"range": "6h"})
        if _minute() == before:
            break
    start = before - dt.timedelta(hours=6)
    now = info.filter(pl.col("request_time") >= start)
    prev = info.filter((pl.col("request_time") >= start - dt.timedelta(hours=6)) & (pl.col("request_time") < start))
    assert now.height and prev.height
    metric = {m.label: m for m in at.metric}
    assert metric["Requests"].value == units.count(now.height)
    assert metric["Requests"].delta == units.change(now.height, prev.height)
    assert metric["Tokens"].delta == units.change(now["total_tokens"].sum(), prev["total_tokens"].sum())
    p95_now, p95_prev = now["duration_ms"].quantile(0.95), prev["duration_ms"].quantile(0.95)
    assert metric["p95 latency"].delta == units.change(p95_now, p95_prev)


def _alert(rule: str, scope: str, state: str, since: dt.datetime, observed: float) -> dict:
    return {
        "alert_id": uuid.uuid4().hex, "rule": rule, "metric": "error_rate", "scope": scope, "window": "1h",
        "window_start": since - dt.timedelta(hours=1), "window_end": since, "observed": observed, "threshold": 0.05,
        "comparison": ">", "state": state, "since": since, "notified": None, "run_id": "r1", "day": since.date(),
    }  # fmt: skip


def test_overview_lists_the_alerts_firing_now(warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = str(tmp_path / "wh")
    shutil.copytree(warehouse, copy)
    t0 = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3)
    rows = [
        _alert("errors", "all", "FIRING", t0, 0.2),
        _alert("errors", "all", "RESOLVED", t0 + dt.timedelta(hours=1), 0.01),  # fired, then resolved
        _alert("errors", "service=docs-rag", "RESOLVED", t0, 0.01),
        _alert("errors", "service=docs-rag", "FIRING", t0 + dt.timedelta(hours=2), 0.3),  # firing now
        _alert("spend", "user_id=u1", "FIRING", t0 + dt.timedelta(minutes=5), 12.5),  # firing now
    ]
    uri = table_uri(copy, "alerts")
    open_or_create(uri, ALERTS)
    write_deltalake(uri, pa.Table.from_pylist(rows, schema=ALERTS.schema), mode="append")
    monkeypatch.setenv("SPANLAKE_WAREHOUSE", copy)
    at = _run(None, {"range": "all"})
    firing = at.dataframe[-1].value
    assert list(zip(firing["rule"], firing["scope"])) == [("errors", "service=docs-rag"), ("spend", "user_id=u1")]
    assert firing["observed"].tolist() == [0.3, 12.5]


# --- Traces -----------------------------------------------------------------------------


def test_traces_page_one_is_the_newest_traces(app, warehouse: str) -> None:
    at = app("traces.py", range="all")
    info = _traces(warehouse).sort(["request_time", "trace_id"], descending=[True, False])
    assert _shown_ids(at) == info["trace_id"].head(PAGE).to_list()
    assert at.caption[0].value.startswith(f"{units.count(info.height)} traces match")


def test_a_bad_filter_shows_its_error_inline(app) -> None:
    at = app("traces.py", range="all", q="trace.status = ")
    assert len(at.error) == 1
    assert "expected a value" in at.error[0].value and "position 15" in at.error[0].value
    assert not at.dataframe


def test_the_search_quick_filters_and_sort_round_trip_through_the_url(app, warehouse: str) -> None:
    query = {"q": "service_name != 'search-api'", "quick": ["Errors"], "sort": "Slowest first"}
    at = app("traces.py", range="all", **query)
    assert at.text_input(key="q").value == query["q"]
    assert at.button_group(key="quick").value == ["Errors"]
    assert at.selectbox(key="sort").value == "Slowest first"
    expected = (
        _traces(warehouse)
        .filter((pl.col("service_name") != "search-api") & (pl.col("state") == "ERROR"))
        .sort(["duration_ms", "trace_id"], descending=[True, False], nulls_last=True)
    )
    assert 0 < expected.height < PAGE
    assert _shown_ids(at) == expected["trace_id"].to_list()


def test_feedback_and_slow_quick_filters_compose_with_the_sidebar(app, warehouse: str) -> None:
    at = app("traces.py", range="all", service="support-bot", feedback="latency_over_threshold = yes",
             quick=["Slower than p95"])  # fmt: skip
    assert at.selectbox(key="feedback").value == "latency_over_threshold = yes"
    info = _traces(warehouse)
    p95 = info.filter(pl.col("service_name") == "support-bot")["duration_ms"].quantile(0.95)
    flagged = scan_assessments(warehouse=warehouse, kind="feedback").filter(
        (pl.col("name") == "latency_over_threshold") & pl.col("value_bool")
    ).select("trace_id").collect()  # fmt: skip
    expected = (
        info.filter((pl.col("service_name") == "support-bot") & (pl.col("duration_ms") > p95))
        .join(flagged, on="trace_id", how="semi")
        .sort(["request_time", "trace_id"], descending=[True, False])
    )
    assert expected.height > 0
    assert _shown_ids(at) == expected["trace_id"].to_list()


def test_paging_walks_every_trace_once_and_back(app, warehouse: str) -> None:
    at = app("traces.py", range="all")
    everything = _traces(warehouse).sort(["request_time", "trace_id"], descending=[True, False])["trace_id"]
    pages = [_shown_ids(at)]
    assert at.button(key="traces_previous").disabled
    while not at.button(key="traces_next").disabled:
        at.button(key="traces_next").click().run()
        pages.append(_shown_ids(at))
    assert len(pages) == -(-everything.len() // PAGE)
    assert [tid for page in pages for tid in page] == everything.to_list()
    at.button(key="traces_previous").click().run()
    assert _shown_ids(at) == pages[-2]
    assert f"page {len(pages) - 1}" in at.caption[0].value


def test_a_selected_row_opens_trace_detail(app) -> None:
    at = app("traces.py", range="all")
    first = _shown_ids(at)[0]
    at.session_state["traces_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    assert at.query_params["trace_id"] == [first] or at.query_params["trace_id"] == first


# --- Sessions and users -----------------------------------------------------------------


def _expected_groups(warehouse: str, by: str) -> pl.DataFrame:
    costs = scan("trace_costs", warehouse=warehouse).select("trace_id", "cost_usd").collect()
    return (
        _traces(warehouse).join(costs, on="trace_id", how="left")
        .group_by(by)
        .agg(traces=pl.len(), errors=(pl.col("state") == "ERROR").sum(), tokens=pl.col("total_tokens").sum(),
             cost=pl.when(pl.col("cost_usd").count() > 0).then(pl.col("cost_usd").sum()),  # unpriced: not $0
             first=pl.col("request_time").min(), last=pl.col("request_time").max())
        .sort(by)
    )  # fmt: skip


@pytest.mark.parametrize(("table", "by"), [("sessions_table", "session_id"), ("users_table", "user_id")])
def test_sessions_and_users_equal_the_tables(app, warehouse: str, table: str, by: str) -> None:
    at = app("sessions.py", range="all")
    shown = pl.from_pandas(at.dataframe(key=table).value).sort(by)
    expected = _expected_groups(warehouse, by)
    assert shown[by].to_list() == expected[by].to_list()
    assert shown["traces"].to_list() == expected["traces"].to_list()
    assert shown["errors"].to_list() == expected["errors"].to_list()
    assert shown["tokens"].to_list() == [units.count(v) for v in expected["tokens"]]
    assert shown["cost"].to_list() == [units.usd(v) for v in expected["cost"]]
    assert shown["last_seen"].dt.replace_time_zone("UTC").to_list() == expected["last"].to_list()


def test_a_session_reads_as_a_conversation_linking_each_turn(app, warehouse: str) -> None:
    info = _traces(warehouse)
    session = info.group_by("session_id").len().sort("len", "session_id", descending=True)["session_id"][0]
    turns = info.filter(pl.col("session_id") == session).sort("request_time", "trace_id")
    at = app("sessions.py", range="all", session=session)
    assert at.text_input(key="session").value == session
    messages = at.chat_message
    assert [m.name for m in messages] == ["user", "assistant"] * turns.height
    assert [m.markdown[0].value for m in messages[::2]] == turns["request_preview"].str.replace_all(
        "$", "\\$", literal=True
    ).to_list()
    links = at.page_link
    assert [link.proto.page for link in links] == ["trace"] * turns.height
    assert [link.proto.query_string for link in links] == [f"trace_id={t}" for t in turns["trace_id"]]


def test_picking_a_session_row_opens_it_and_a_user_row_sets_the_user_filter(app, warehouse: str) -> None:
    at = app("sessions.py", range="all")
    session = at.dataframe(key="sessions_table").value["session_id"][1]
    user = at.dataframe(key="users_table").value["user_id"][2]
    at.session_state["sessions_table"] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    assert at.text_input(key="session").value == session
    assert len(at.chat_message) > 0
    at.session_state["users_table"] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    at.run()
    at.button(key="sessions_set_user").click().run()
    assert at.sidebar.text_input(key="user").value == user
    shown = at.dataframe(key="users_table").value
    assert shown["user_id"].tolist() == [user]


def test_an_unknown_session_says_what_to_do(app) -> None:
    at = app("sessions.py", range="all", session="no-such-session")
    assert any("no-such-session" in i.value and "widen the time range" in i.value for i in at.info)
