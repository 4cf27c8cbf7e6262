"""The Quality, Cost, Ingest health and Alerts pages under AppTest: each renders on the fixture
warehouse, the numbers it shows equal Polars on the tables, and a missing table says what to do.

The fixture warehouse (tests/dashboard_support.py) gets, through the real writers: LLM-judge
results with a human override and human feedback (then the cost job again, for judge spend), and
an ingest batch of undecodable messages (dead letters, with a consumer lag). The alerts rows
are written directly with the ALERTS spec, as the monitors job will write them.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import polars as pl
import pytest
from dashboard_support import build_warehouse
from deltalake import DeltaTable, write_deltalake
from kafka.consumer.fetcher import ConsumerRecord
from streamlit.testing.v1 import AppTest

from spanlake.cli.dashboard import app_path
from spanlake.dashboard import units
from spanlake.ingest.sink import DeltaSink
from spanlake.jobs.assessments import RESULT_SCHEMA, log_feedback, override_feedback, result_row, write_assessments
from spanlake.jobs.costs import run_costs
from spanlake.jobs.feedback import AssessmentSource
from spanlake.query import scan_assessments, value_as_number
from spanlake.tables import scan, table_uri
from spanlake.tables.delta import open_or_create
from spanlake.tables.schemas import ALERTS

TIMEOUT = 60
NOW = dt.datetime.now(dt.timezone.utc)
JUDGE = "gpt-4o-mini-2024-07-18"
LAG = 7


def _judge_and_human(warehouse: str) -> None:
    ids = scan("trace_info", warehouse=warehouse).select("trace_id").sort("trace_id").head(12).collect()["trace_id"]
    judge = AssessmentSource("LLM_JUDGE", JUDGE)
    rows = [result_row(trace_id=t, name="relevance", value="yes" if i % 3 else "no", source=judge,
                       rationale=f"judged {i}", judge_model=JUDGE, judge_input_tokens=900, judge_output_tokens=60)
            for i, t in enumerate(ids[:10])]  # fmt: skip
    write_assessments(pl.DataFrame(rows, schema=RESULT_SCHEMA), run_id=None, warehouse=warehouse)
    first_no = (
        scan_assessments(warehouse=warehouse)
        .filter(pl.col("name") == "relevance", pl.col("value_string") == "no")
        .sort("trace_id")
        .collect()
        .row(0, named=True)
    )
    override_feedback(trace_id=first_no["trace_id"], assessment_id=first_no["assessment_id"], value="yes",
                      rationale="it was relevant", warehouse=warehouse)  # fmt: skip
    log_feedback(trace_id=ids[10], name="relevance", value="no", rationale="off topic", warehouse=warehouse)
    log_feedback(trace_id=ids[11], name="helpful", value=True, warehouse=warehouse)
    run_costs(warehouse=warehouse)


def _dead_letters(warehouse: str) -> None:
    batches = scan("ingest_batches", warehouse=warehouse).collect()
    start = batches["offsets"].explode().struct.field("last_offset").max() + 1
    sink = DeltaSink(warehouse, group="dashboard-test", topic="otlp_spans")
    sink.load_offsets([0])
    records = [ConsumerRecord("otlp_spans", 0, -1, start + i, 0, 0, None, b"not otlp", [], None, 0, 8, 0)
               for i in range(3)]  # fmt: skip
    sink.commit(sink.decode(records), lag=LAG)


def _alert(rule: str, metric: str, scope: str, state: str, minutes_ago: int, observed: float, threshold: float) -> dict:
    since = NOW - dt.timedelta(minutes=minutes_ago)
    return {"alert_id": os.urandom(16).hex(), "rule": rule, "metric": metric, "scope": scope, "window": "1h",
            "window_start": since - dt.timedelta(hours=1), "window_end": since, "observed": observed,
            "threshold": threshold, "comparison": ">", "state": state, "since": since, "notified": None,
            "run_id": "r" * 32, "day": since.date()}  # fmt: skip


ALERT_ROWS = [
    _alert("errors", "error_rate", "all", "FIRING", 50, 0.2, 0.1),
    _alert("errors", "error_rate", "all", "RESOLVED", 20, 0.05, 0.1),
    _alert("bot-spend", "cost_usd", "service=support-bot", "FIRING", 30, 12.5, 10),
    _alert("slow-search", "latency_p95_ms", "service=search-api", "FIRING", 10, 4200, 3000),
]


def _alerts(warehouse: str) -> None:
    table = open_or_create(table_uri(warehouse, "alerts"), ALERTS)
    frame = pl.DataFrame(ALERT_ROWS).to_arrow().select(ALERTS.column_names).cast(ALERTS.schema)
    write_deltalake(table, frame, mode="append", partition_by=list(ALERTS.partition_by))


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> str:
    warehouse = build_warehouse(tmp_path_factory.mktemp("dashboard_c") / "wh")
    _judge_and_human(warehouse)
    _dead_letters(warehouse)
    _alerts(warehouse)
    return warehouse


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Ingested traces, and no job ever ran."""
    return build_warehouse(tmp_path_factory.mktemp("dashboard_c_bare") / "wh", traces=20, jobs=False)


def _run(warehouse: str, monkeypatch: pytest.MonkeyPatch, page: str, **query: str) -> AppTest:
    monkeypatch.setenv("SPANLAKE_WAREHOUSE", warehouse)
    at = AppTest.from_file(str(app_path()), default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(str(Path("views") / page)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error or page == "alerts.py", [e.value for e in at.error]  # alerts shows firing ones as errors
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _frame(at: AppTest, *columns: str) -> pl.DataFrame:
    """The first dataframe on the page that has these columns."""
    for element in at.dataframe:
        if set(columns) <= set(element.value.columns):
            return pl.from_pandas(element.value)
    raise AssertionError(f"no dataframe with the columns {columns}")


# --- Cost -------------------------------------------------------------------------------------


def test_cost_totals_are_the_rollups_day_rows(warehouse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(warehouse, monkeypatch, "cost.py", range="all")
    rollups = scan("cost_rollups", warehouse=warehouse).filter(pl.col("window") == "day", pl.col("kind") == "app")
    total = rollups.select(pl.col("cost_usd").sum()).collect().item()
    traces = scan("trace_info", warehouse=warehouse).select(pl.len()).collect().item()
    metrics = _metrics(at)
    assert metrics["Total cost"] == units.usd(total)
    assert metrics["Cost per request"] == units.usd(total / traces)
    cached = rollups.select(pl.col("cache_read_tokens").sum()).collect().item()
    assert metrics["Cached input"] == units.count(cached)
    users = rollups.group_by("user_id").agg(pl.col("cost_usd").sum()).sort("cost_usd", descending=True).collect()
    shown = _frame(at, "user_id", "model_calls")
    assert shown["user_id"][0] == users["user_id"][0]
    assert shown["cost_usd"][0] == pytest.approx(users["cost_usd"][0])


def test_cost_lists_unpriced_models_and_the_price_source(warehouse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(warehouse, monkeypatch, "cost.py", range="all")
    costs = scan("span_costs", warehouse=warehouse).collect()
    unpriced = costs.filter(pl.col("cost_usd").is_null())
    assert not unpriced.is_empty()  # the workload sends model calls without token counts
    shown = _frame(at, "unpriced_reason")
    assert shown["spans"].sum() == unpriced.height
    assert set(shown["unpriced_reason"]) == set(unpriced["unpriced_reason"])
    sources = _frame(at, "price_source")
    assert set(sources["price_source"]) == set(costs["price_source"].drop_nulls())
    assert sources["spans"].sum() == costs.height - unpriced.height


def test_cost_applies_the_service_filter_and_links_traces(warehouse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(warehouse, monkeypatch, "cost.py", range="all", service="support-bot")
    rollups = scan("cost_rollups", warehouse=warehouse).filter(
        pl.col("window") == "day", pl.col("kind") == "app", pl.col("service") == "support-bot"
    )
    assert _metrics(at)["Total cost"] == units.usd(rollups.select(pl.col("cost_usd").sum()).collect().item())
    top = _frame(at, "link", "root_span_name")
    assert top["service_name"].unique().to_list() == ["support-bot"]
    info = scan("trace_info", warehouse=warehouse).filter(pl.col("service_name") == "support-bot").select("trace_id")
    costliest = (
        scan("trace_costs", warehouse=warehouse).join(info, on="trace_id")
        .sort("cost_usd", descending=True, nulls_last=True).collect()
    )  # fmt: skip
    assert top["link"][0] == f"trace?trace_id={costliest['trace_id'][0]}"


def test_cost_says_to_run_the_cost_job(bare: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(bare, monkeypatch, "cost.py", range="all")
    assert any("spanlake jobs run costs" in i.value for i in at.info)


# --- Quality ----------------------------------------------------------------------------------


def test_quality_pass_rates_are_scan_assessments(warehouse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(warehouse, monkeypatch, "quality.py", range="all")
    expected = (
        scan_assessments(warehouse=warehouse, kind="feedback")
        .group_by("name")
        .agg(rate=value_as_number().mean(), results=pl.len())
        .collect()
    )
    shown = _frame(at, "scorer", "pass_rate").join(expected, left_on="scorer", right_on="name")
    assert shown.height == expected.height
    assert shown["pass_rate"].to_list() == pytest.approx(shown["rate"].to_list())
    assert shown["results"].to_list() == shown["results_right"].to_list()
    # relevance: 10 judged, one "no" overridden to "yes" by a person, one human "no"
    relevance = shown.filter(pl.col("scorer") == "relevance").row(0, named=True)
    assert relevance["results"] == 11
    assert relevance["pass_rate"] == pytest.approx(7 / 11)


def test_quality_worst_traces_and_human_feedback(warehouse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(warehouse, monkeypatch, "quality.py", range="all")
    at.selectbox(key="quality_scorer").set_value("relevance").run()
    assert not at.exception
    worst = _frame(at, "trace", "rationale")
    valid_no = (
        scan_assessments(warehouse=warehouse)
        .filter(pl.col("name") == "relevance", pl.col("value_string") == "no")
        .collect()
    )
    assert sorted(worst["value"].head(valid_no.height)) == ["no"] * valid_no.height
    assert {t.split("=")[1] for t in worst["trace"].head(valid_no.height)} == set(valid_no["trace_id"])
    assert "it was relevant" in worst["rationale"].to_list()  # the human override, not the judge's "no"
    human = _frame(at, "reviewer")
    assert human.height == 3
    assert set(human["scorer"]) == {"relevance", "helpful"}


def test_quality_judge_spend_is_the_judge_rollups(warehouse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(warehouse, monkeypatch, "quality.py", range="all")
    judge = scan("cost_rollups", warehouse=warehouse).filter(pl.col("window") == "day", pl.col("kind") == "judge")
    spend = judge.select(pl.col("cost_usd").sum(), pl.col("spans").sum()).collect()
    assert spend["spans"].item() == 10
    assert spend["cost_usd"].item() > 0
    assert _metrics(at)["Judge cost"] == units.usd(spend["cost_usd"].item())
    assert _metrics(at)["Judge results"] == units.count(10)


def test_quality_says_to_run_the_scorers(bare: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(bare, monkeypatch, "quality.py", range="all")
    assert any("spanlake jobs run scorers" in i.value for i in at.info)


# --- Ingest health ----------------------------------------------------------------------------


def test_ingest_health_shows_the_batches_and_dead_letters(warehouse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(warehouse, monkeypatch, "ingest_health.py", range="all")
    batches = scan("ingest_batches", warehouse=warehouse).collect()
    errors = scan("ingest_errors", warehouse=warehouse).collect()
    assert errors.height == 3
    metrics = _metrics(at)
    assert metrics["Spans"] == units.count(batches["spans"].sum())
    assert metrics["Batches"] == units.count(batches.height)
    assert metrics["Consumer lag"] == units.count(LAG)
    assert metrics["Dead letters"] == units.count(errors.height)
    reasons = _frame(at, "stage", "messages")
    assert reasons["messages"].sum() == errors.height
    assert set(reasons["error"]) == set(errors["error"])
    partitions = _frame(at, "partition", "last_offset")
    assert partitions["last_offset"].to_list() == [batches["offsets"].explode().struct.field("last_offset").max()]
    info = scan("trace_info", warehouse=warehouse).collect()
    fresh = ((info["ingested_at"] - info["end_time"]).dt.total_microseconds() / 1000).quantile(0.5)
    assert metrics["Freshness p50"] == units.duration(fresh)


def test_ingest_health_shows_table_sizes_and_job_runs(warehouse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(warehouse, monkeypatch, "ingest_health.py", range="all")
    tables = _frame(at, "table", "files")
    span_data = DeltaTable(table_uri(warehouse, "span_data"))
    row = tables.filter(pl.col("table") == "span_data").row(0, named=True)
    files = span_data.file_uris()
    assert (row["files"], row["version"]) == (len(files), span_data.version())
    assert row["size"] == f"{sum(os.path.getsize(f) for f in files) / 1024:.1f} KiB"
    assert "alerts" in tables["table"].to_list()
    runs = scan("job_runs", warehouse=warehouse).sort("started_at", descending=True).collect()
    shown = _frame(at, "job", "status")
    assert shown["job"].to_list() == runs["job"].to_list()  # newest first
    assert shown["status"].to_list() == runs["status"].to_list()


def test_ingest_health_says_no_job_ran(bare: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(bare, monkeypatch, "ingest_health.py", range="all")
    assert any("spanlake jobs run all" in i.value for i in at.info)


# --- Alerts -----------------------------------------------------------------------------------


def test_alerts_show_firing_first_then_history(warehouse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(warehouse, monkeypatch, "alerts.py", range="all")
    metrics = _metrics(at)
    assert (metrics["Firing"], metrics["Resolved"], metrics["Rules"]) == ("2", "1", "3")
    current = _frame(at, "rule", "condition")
    assert current["state"].to_list() == ["FIRING", "FIRING", "RESOLVED"]
    assert current["rule"].to_list() == ["slow-search", "bot-spend", "errors"]
    assert current["condition"][1] == f"{units.usd(12.5)} > {units.usd(10)}"
    assert any("bot-spend" in e.value for e in at.error)
    history = pl.from_pandas(at.dataframe[1].value)
    assert history["since"].to_list() == sorted(history["since"].to_list(), reverse=True)
    assert history.height == len(ALERT_ROWS)


def test_alerts_follow_the_service_filter(warehouse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(warehouse, monkeypatch, "alerts.py", range="all", service="support-bot")
    current = _frame(at, "rule", "condition")
    assert set(current["rule"]) == {"bot-spend", "errors"}  # search-api's scope is hidden, "all" stays
    assert _metrics(at)["Firing"] == "1"


def test_alerts_say_how_to_add_monitors(bare: str, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _run(bare, monkeypatch, "alerts.py", range="all")
    assert any("[[monitors]]" in i.value and "spanlake jobs run monitors" in i.value for i in at.info)
