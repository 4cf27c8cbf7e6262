"""Trace detail and the Review queue under AppTest, on the fixture warehouse that the real ingest,
scorers and cost job write (tests/dashboard_support.py): what they show equals the tables, and
the feedback they record lands in `assessments` as HUMAN rows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import polars as pl
import pytest
from dashboard_support import EXAMPLES, build_warehouse
from streamlit.testing.v1 import AppTest

from spanlake.cli.dashboard import app_path
from spanlake.dashboard import units
from spanlake.query import scan_assessments
from spanlake.tables import scan

TIMEOUT = 60


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_warehouse(tmp_path_factory.mktemp("dashboard-b") / "wh")


@pytest.fixture
def app(warehouse: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SPANLAKE_WAREHOUSE", warehouse)
    monkeypatch.setenv("SPANLAKE_SCORERS_FILE", str(EXAMPLES / "scorers.toml"))

    def run(page: str, **query: str) -> AppTest:
        at = AppTest.from_file(str(app_path()), default_timeout=TIMEOUT)
        for key, value in query.items():
            at.query_params[key] = value
        at.run()
        at.switch_page(str(Path("views") / page)).run()
        assert_clean(at)
        return at

    return run


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def spans_of(warehouse: str, trace_id: str) -> pl.DataFrame:
    return scan("span_data", warehouse=warehouse).filter(pl.col("trace_id") == trace_id).collect()


def select_span(at: AppTest, trace_id: str, span_id: str) -> AppTest:
    at.selectbox(key=f"span-{trace_id}").set_value(span_id).run()
    assert_clean(at)
    return at


def test_trace_detail_shows_the_tables_numbers_and_one_bar_per_span(app, warehouse: str) -> None:
    info = scan("trace_info", warehouse=warehouse).filter(pl.col("span_count") >= 5).collect().row(0, named=True)
    spans = spans_of(warehouse, info["trace_id"])
    cost = scan("trace_costs", warehouse=warehouse).filter(pl.col("trace_id") == info["trace_id"]).collect()
    at = app("trace_detail.py", trace_id=info["trace_id"])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Spans"] == units.count(spans.height) == units.count(info["span_count"])
    assert metrics["Duration"] == units.duration(info["duration_ms"])
    assert metrics["Tokens"] == units.count(info["total_tokens"])
    assert metrics["Cost"] == units.usd(cost["cost_usd"].item())

    (chart,) = at.get("vega_lite_chart")
    spec = json.loads(chart.proto.spec)
    assert spec["mark"]["type"] == "bar" and "x2" in spec["encoding"]
    assert spec["params"][0]["select"]["type"] == "point"  # a click selects a span
    (dataset,) = chart.proto.datasets
    bars = pl.read_ipc_stream(io.BytesIO(dataset.data.data))
    assert sorted(bars["span_id"]) == sorted(spans["span_id"])  # one bar per span
    root = spans.filter(pl.col("parent_span_id").is_null())
    assert bars["span_id"][0] == root["span_id"].item()  # tree order: the root on top
    assert bars.filter(pl.col("span_id") == root["span_id"].item())["start_ms"].item() == 0


def test_an_llm_span_reads_as_a_conversation(app, warehouse: str) -> None:
    llm = (
        scan("span_data", warehouse=warehouse)
        .filter(pl.col("span_type") == "CHAT_MODEL", pl.col("inputs").str.contains('"role": "tool"'))
        .collect().row(0, named=True)
    )  # fmt: skip
    at = select_span(app("trace_detail.py", trace_id=llm["trace_id"]), llm["trace_id"], llm["span_id"])
    assert at.subheader[0].value == llm["name"]
    roles = [m.name for m in at.chat_message]
    assert roles == ["user", "tool", "assistant"]  # inputs (the user, the tool's result), then the output
    answer = json.loads(llm["outputs"])[0]["parts"][0]["content"]
    assert answer in [m.value for m in at.chat_message[2].markdown]
    assert any("Tool result" in m.value for m in at.chat_message[1].markdown)
    assert {m.label: m.value for m in at.metric}["Input tokens"] == units.count(llm["input_tokens"])


def test_a_tool_span_and_an_exception(app, warehouse: str) -> None:
    failed = (
        scan("span_data", warehouse=warehouse)
        .filter(pl.col("span_type") == "TOOL", pl.col("status_code") == "ERROR", pl.col("events").is_not_null())
        .collect().row(0, named=True)
    )  # fmt: skip
    at = select_span(app("trace_detail.py", trace_id=failed["trace_id"]), failed["trace_id"], failed["span_id"])
    assert at.subheader[0].value == failed["name"]
    attributes = json.loads(failed["attributes"])
    assert any(json.loads(j.proto.body) == attributes for j in at.json)
    exception = json.loads(failed["events"])[0]["attributes"]
    errors = [e.value for e in at.error]
    assert any(exception["exception.type"] in e and exception["exception.message"] in e for e in errors)

    raised = (
        scan("span_data", warehouse=warehouse)
        .filter(pl.col("status_code") == "ERROR", pl.col("events").str.contains("exception.stacktrace"))
        .collect().row(0, named=True)
    )  # fmt: skip
    at = select_span(app("trace_detail.py", trace_id=raised["trace_id"]), raised["trace_id"], raised["span_id"])
    stack = json.loads(raised["events"])[0]["attributes"]["exception.stacktrace"]
    assert [c.value.strip() for c in at.code] == [stack.strip()]
    assert raised["status_message"] in [e.value for e in at.error]


def test_unknown_and_malformed_trace_ids_say_so(app) -> None:
    at = app("trace_detail.py", trace_id="0" * 32)
    assert any("No trace" in w.value for w in at.warning)
    at = app("trace_detail.py", trace_id="not-a-trace")
    assert any("32 hexadecimal digits" in e.value for e in at.error)


def test_the_feedback_form_writes_human_rows(app, warehouse: str) -> None:
    code = (
        scan_assessments(warehouse=warehouse)
        .filter(pl.col("name") == "trace_failed", pl.col("source_type") == "CODE")
        .collect().row(0, named=True)
    )  # fmt: skip
    trace_id = code["trace_id"]
    at = app("trace_detail.py", trace_id=trace_id)
    form = f"fb-{trace_id}-0"
    at.selectbox(key=f"{form}-name").set_value("trace_failed").run()
    verdict = "no" if code["value_bool"] else "yes"
    at.radio(key=f"{form}-value-yes/no").set_value(verdict)
    at.text_area(key=f"{form}-rationale").input("the retry succeeded")
    at.text_input(key="reviewer").input("pat")
    at.button(key="feedback-save").click().run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]

    def human() -> pl.LazyFrame:  # a scan pins the table's version: scan again after each write
        return scan_assessments(warehouse=warehouse).filter(pl.col("trace_id") == trace_id, pl.col("source_type") == "HUMAN")

    row = human().collect().row(0, named=True)
    assert (row["name"], row["value_bool"], row["source_id"]) == ("trace_failed", verdict == "yes", "pat")
    assert (row["rationale"], row["overrides"], row["span_id"]) == ("the retry succeeded", code["assessment_id"], None)
    shown = at.dataframe[-1].value
    assert ("trace_failed", "HUMAN pat", verdict) in set(zip(shown["name"], shown["source"], shown["value"]))
    assert [t.proto.body for t in at.get("toast")] == [f"Saved trace_failed = {verdict}, replacing "
                                                       f"{'yes' if code['value_bool'] else 'no'} by CODE trace_failed"]  # fmt: skip

    # A name of one's own (not a registered scorer) with a text value: a new feedback, no override.
    form = f"fb-{trace_id}-1"
    at.text_input(key=f"{form}-own").input("tone").run()
    at.radio(key=f"{form}-kind-tone").set_value("text").run()
    at.text_input(key=f"{form}-value-text").input("friendly")
    at.button(key="feedback-save").click().run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    tone = human().filter(pl.col("name") == "tone").collect().row(0, named=True)
    assert (tone["value_string"], tone["source_id"], tone["overrides"]) == ("friendly", "pat", None)


def test_the_review_queue_labels_two_traces_in_a_row(app, warehouse: str) -> None:
    failed = scan_assessments(warehouse=warehouse).filter(pl.col("name") == "trace_failed", pl.col("value_bool"))
    queue = (
        scan("trace_info", warehouse=warehouse).join(failed.select("trace_id"), on="trace_id", how="semi")
        .sort("request_time", "trace_id", descending=True).head(20).collect()["trace_id"].to_list()
    )  # fmt: skip
    assert len(queue) >= 3
    at = app("review.py", range="all", q="feedback.trace_failed = 'yes'")
    at.text_input(key="reviewer").input("quinn").run()
    for position, trace_id in enumerate(queue[:2]):
        assert [p.proto.text for p in at.get("progress")] == [f"Trace {position + 1} of {len(queue)}"]
        assert [link.proto.label for link in at.get("page_link")] == [f"Trace {trace_id}"]
        at.radio(key=f"rv-{trace_id}-trace_failed").set_value("no")
        at.button(key="review-save").click().run()
        assert_clean(at)
    assert [p.proto.text for p in at.get("progress")] == [f"Trace 3 of {len(queue)}"]
    labels = (
        scan_assessments(warehouse=warehouse).filter(pl.col("source_type") == "HUMAN", pl.col("source_id") == "quinn")
        .collect()
    )  # fmt: skip
    assert sorted(labels["trace_id"]) == sorted(queue[:2])
    assert labels["name"].to_list() == ["trace_failed"] * 2 and not labels["value_bool"].any()

    # Picked again, the filter no longer matches what the reviewer marked "no" (overrides count).
    again = app("review.py", range="all", q="feedback.trace_failed = 'yes'")
    again.text_input(key="reviewer").input("quinn").run()
    assert [p.proto.text for p in again.get("progress")] == [f"Trace 1 of {len(queue) - 2}"]
    # A queue that holds labelled traces starts past them.
    ids = ", ".join(f"'{t}'" for t in queue[:3])
    again = app("review.py", range="all", q=f"trace_id IN ({ids})")
    again.text_input(key="reviewer").input("quinn").run()
    assert [p.proto.text for p in again.get("progress")] == ["Trace 3 of 3"]
    assert [link.proto.label for link in again.get("page_link")] == [f"Trace {queue[2]}"]


def test_a_bad_queue_filter_is_one_clear_message(app) -> None:
    at = app("review.py", range="all", q="trace.nope = 1")
    at.text_input(key="reviewer").input("quinn").run()
    assert_clean(at)
    assert len(at.error) == 1 and "nope" in at.error[0].value
