"""The read side of assessments over a warehouse ingested through the real path (OTel SDK ->
KafkaSpanExporter -> broker -> spanlake ingest -> Delta), with hand-written `assessments` rows:
overrides resolved in `scan_assessments`, `feedback.` / `expectation.` filters, `get_trace`'s
assessments in the object, the tree and the JSON, and the MLflow-shaped Trace accessors.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from click.testing import CliRunner
from deltalake import write_deltalake
from support import create_topic, ingest

from spanlake.errors import FilterError
from spanlake.query import (
    count_traces,
    get_trace,
    scan_assessments,
    scan_traces,
    search_traces,
    value_as_number,
)  # fmt: skip
from spanlake.query.entities import SpanStatus
from spanlake.settings import Settings
from spanlake.tables.schemas import ASSESSMENTS

UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC).replace(microsecond=0)


def _assessment(trace_id: str, name: str, value: Any, *, at: int, **over: Any) -> dict[str, Any]:
    """An assessments row; `at` orders created_at (seconds after NOW)."""
    row: dict[str, Any] = {c: None for c in ASSESSMENTS.column_names}
    kind = {bool: "bool", int: "number", float: "number", str: "string"}.get(type(value), "json")
    column = {"bool": "value_bool", "number": "value_number", "string": "value_string", "json": "value_json"}[kind]
    created = NOW + dt.timedelta(seconds=at)
    row.update(assessment_id=uuid.uuid4().hex, trace_id=trace_id, name=name, kind="feedback", source_type="CODE",
               source_id="test", created_at=created, day=created.date())  # fmt: skip
    if value is not None:
        row.update(value_type=kind, **{column: json.dumps(value) if kind == "json" else value})
    row.update(over)
    return row


def write_assessments(warehouse: str, rows: list[dict[str, Any]]) -> None:
    cols = {f.name: [r[f.name] for r in rows] for f in ASSESSMENTS.schema}
    cols["metadata"] = [None if m is None else list(m.items()) for m in cols["metadata"]]
    table = pa.Table.from_pydict(cols, schema=ASSESSMENTS.schema)
    write_deltalake(f"{warehouse}/assessments", table, partition_by=["day"], mode="append")


class Lake:
    """The ingested warehouse: `ids` maps a letter to its trace id; `bare` is a copy taken
    before any assessment was written."""

    def __init__(self, warehouse: str, bare: str, ids: dict[str, str], rows: dict[str, dict[str, Any]]) -> None:
        self.warehouse, self.bare, self.ids, self.rows = warehouse, bare, ids, rows

    def letters(self, trace_ids: Any) -> str:
        by_id = {v: k for k, v in self.ids.items()}
        return "".join(sorted(by_id[t] for t in trace_ids))


@pytest.fixture(scope="module")
def lake(broker, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Status, StatusCode

    from spanlake.exporter import KafkaSpanExporter

    root = tmp_path_factory.mktemp("assessments")
    topic = f"assessments-read-{uuid.uuid4().hex[:8]}"
    settings = Settings(warehouse=str(root / "warehouse"), bootstrap_servers=broker.bootstrap_servers, topic=topic,
                        group=f"ingest-{topic}", flush_seconds=0.5, session_timeout_ms=6_000)  # fmt: skip
    create_topic(settings, partitions=1)
    provider = TracerProvider(resource=Resource.create({"service.name": "qa-bot"}))
    provider.add_span_processor(BatchSpanProcessor(KafkaSpanExporter(settings.bootstrap_servers, settings.topic)))
    tracer = provider.get_tracer("test")

    def trace(question: str, answer: str, *, retrieve: bool = False, tool_fails: bool = False) -> str:
        attrs = {"mlflow.spanType": "AGENT", "mlflow.spanInputs": question, "mlflow.spanOutputs": answer,
                 "mlflow.traceTag.env": "prod"}  # fmt: skip
        with tracer.start_as_current_span("agent.request", attributes=attrs) as top:
            if retrieve:
                docs = {"mlflow.spanType": "RETRIEVER", "db.name": "pg", "mlflow.spanOutputs": json.dumps([{"id": 1}])}
                with tracer.start_as_current_span("retrieve docs", attributes=docs):
                    pass
            chat = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 12,
                    "gen_ai.usage.output_tokens": 3}  # fmt: skip
            with tracer.start_as_current_span("chat gpt-4o", attributes=chat):
                pass
            if tool_fails:
                with tracer.start_as_current_span("run_sql", attributes={"mlflow.spanType": "TOOL"}) as tool:
                    tool.set_status(Status(StatusCode.ERROR, "timed out"))
        return f"{top.get_span_context().trace_id:032x}"

    ids = {
        "a": trace(json.dumps({"question": "What is Delta?"}), json.dumps({"answer": "A table format"}), retrieve=True),
        "b": trace("hello", "hi there", tool_fails=True),  # plain text in and out
        "c": trace(json.dumps({"question": "q3"}), json.dumps("a3")),
        "d": trace(json.dumps({"question": "q4"}), json.dumps("a4")),
        "e": trace(json.dumps({"question": "q5"}), json.dumps("a5")),  # never assessed
    }
    provider.shutdown()
    ingest(settings)
    bare = str(root / "bare")
    shutil.copytree(settings.warehouse, bare)

    a, b, c, d = ids["a"], ids["b"], ids["c"], ids["d"]
    judge = {"source_type": "LLM_JUDGE", "source_id": "gpt-4o-mini", "judge_model": "gpt-4o-mini"}
    rows = {
        "a_judge": _assessment(a, "correctness", "no", at=1, rationale="misses the point", **judge),
        "a_relevance": _assessment(a, "relevance", 0.9, at=1),
        "a_json": _assessment(a, "is_json", True, at=1),
        "a_expected": _assessment(
            a, "expected_answer", "A table format", at=0, kind="expectation", source_type="HUMAN"
        ),
        "b_judge": _assessment(b, "correctness", "no", at=1, **judge),
        "b_relevance": _assessment(b, "relevance", 0.2, at=1),
        "b_json": _assessment(b, "is_json", False, at=1),
        "b_safety": _assessment(b, "safety", None, at=1, error_code="SCORER_ERROR", error_message="ValueError: boom"),
        "c_judge": _assessment(c, "correctness", "yes", at=1, **judge),
        "c_quality": _assessment(c, "answer.quality", "good", at=1),
        "d_judge": _assessment(d, "correctness", "no", at=1, **judge),
    }
    write_assessments(settings.warehouse, list(rows.values()))
    human = {"source_type": "HUMAN", "source_id": "alice"}
    overrides = {  # a second commit: the overrides come later, as they do
        "a_human": _assessment(a, "correctness", "yes", at=5, overrides=rows["a_judge"]["assessment_id"], **human),
        # a chain: the judge's yes <- a reviewer's no <- another reviewer's yes
        "c_human1": _assessment(c, "correctness", "no", at=5, overrides=rows["c_judge"]["assessment_id"], **human),
    }
    overrides["c_human2"] = _assessment(
        c, "correctness", "yes", at=6, overrides=overrides["c_human1"]["assessment_id"], source_type="HUMAN"
    )
    # two reviewers replace the same verdict: the later one counts
    overrides["d_human1"] = _assessment(d, "correctness", "yes", at=5, overrides=rows["d_judge"]["assessment_id"])
    overrides["d_human2"] = _assessment(d, "correctness", "no", at=7, overrides=rows["d_judge"]["assessment_id"])
    write_assessments(settings.warehouse, list(overrides.values()))
    return Lake(settings.warehouse, bare, ids, {**rows, **overrides})


def _valid(lake: Lake, **kw: Any) -> set[tuple[str, str, Any]]:
    frame = scan_assessments(warehouse=lake.warehouse, **kw).collect()
    by_id = {v: k for k, v in lake.ids.items()}
    rows = frame.to_dicts()
    values = [r["value_string"] or r["value_number"] or r["value_bool"] for r in rows]
    return {(by_id[r["trace_id"]], r["name"], v) for r, v in zip(rows, values)}


# --- scan_assessments -------------------------------------------------------------------


def test_scan_assessments_counts_an_override_instead_of_what_it_replaces(lake: Lake) -> None:
    assert {(t, v) for t, name, v in _valid(lake) if name == "correctness"} == {
        ("a", "yes"), ("b", "no"), ("c", "yes"), ("d", "no"),  # human wins; chain -> last; siblings -> latest
    }  # fmt: skip
    everything = scan_assessments(warehouse=lake.warehouse, valid_only=False).collect()
    assert everything.height == len(lake.rows)
    invalid = set(everything.filter(~pl.col("valid"))["assessment_id"])
    names = {"a_judge", "c_judge", "c_human1", "d_judge", "d_human1"}
    assert invalid == {lake.rows[n]["assessment_id"] for n in names}
    assert _valid(lake, kind="expectation") == {("a", "expected_answer", "A table format")}
    feedback = scan_assessments(warehouse=lake.warehouse, kind="feedback").collect()
    assert set(feedback["kind"]) == {"feedback"} and feedback["valid"].all()
    assert scan_assessments(warehouse=lake.warehouse).collect_schema().names() == [*ASSESSMENTS.column_names, "valid"]
    with pytest.raises(FilterError, match="kind must be one of feedback, expectation or None, not 'verdict'"):
        scan_assessments(warehouse=lake.warehouse, kind="verdict")


def test_quality_figures_count_the_override_not_both(lake: Lake) -> None:
    rates = (
        scan_assessments(warehouse=lake.warehouse, kind="feedback")
        .group_by("name")
        .agg(n=pl.len(), rate=value_as_number().mean())
        .collect()
    )
    by_name = {r["name"]: r for r in rates.to_dicts()}
    assert by_name["correctness"]["n"] == 4 and by_name["correctness"]["rate"] == 0.5  # yes, no, yes, no
    assert by_name["is_json"]["rate"] == 0.5 and by_name["relevance"]["rate"] == pytest.approx(0.55)
    assert by_name["answer.quality"]["rate"] is None and by_name["safety"]["rate"] is None  # not a number; an error


def test_a_warehouse_without_assessments_reads_as_empty(lake: Lake) -> None:
    empty = scan_assessments(warehouse=lake.bare).collect()
    assert empty.is_empty() and empty.columns == [*ASSESSMENTS.column_names, "valid"]
    assert get_trace(lake.ids["a"], warehouse=lake.bare).assessments == []
    assert count_traces("feedback.correctness = 'yes'", warehouse=lake.bare) == 0
    assert count_traces("feedback.correctness IS NULL", warehouse=lake.bare) == 5
    page = search_traces("NOT feedback.x = 'y'", max_results=2, warehouse=lake.bare)
    assert page.height == 2 and page.next_page_token  # the token remembers the table was missing
    rest = search_traces("NOT feedback.x = 'y'", max_results=10, page_token=page.next_page_token, warehouse=lake.bare)
    assert rest.height == 3 and rest.next_page_token is None


# --- filters ----------------------------------------------------------------------------

CASES = [
    ("feedback.correctness = 'yes'", "ac"), ("feedback.correctness = 'no'", "bd"),
    ("feedback.correctness != 'yes'", "bd"), ("NOT feedback.correctness = 'yes'", "bde"),
    ("feedback.correctness IN ('yes', 'maybe')", "ac"), ("feedback.correctness NOT IN ('yes')", "bd"),
    ("feedback.correctness IS NULL", "e"), ("feedback.correctness IS NOT NULL", "abcd"),
    ("feedback.correctness LIKE 'y%'", "ac"), ("feedback.correctness ILIKE 'Y%'", "ac"),
    ("feedback.correctness NOT LIKE 'y%'", "bd"), ("feedback.correctness RLIKE '^n'", "bd"),
    ("feedback.correctness = 'Yes'", ""),  # strings compare exactly
    # numbers compare with number values only
    ("feedback.relevance > 0.5", "a"), ("feedback.relevance >= 0.2", "ab"), ("feedback.relevance < 0.5", "b"),
    ("feedback.relevance = 0.9", "a"), ("feedback.relevance IN (0.2, 0.9)", "ab"),
    ("feedback.relevance NOT IN (0.9)", "b"), ("feedback.relevance != 0.2", "a"), ("feedback.correctness = 1", ""),
    # bools: 'true'/'false' and the verdict words 'yes'/'no'
    ("feedback.is_json = 'true'", "a"), ("feedback.is_json = 'YES'", "a"), ("feedback.is_json = 'false'", "b"),
    ("feedback.is_json != 'true'", "b"), ("feedback.is_json IN ('no', 'other')", "b"),
    ("feedback.is_json = 'maybe'", ""), ("feedback.is_json LIKE 'tr%'", ""),  # patterns match strings only
    # an error holds no value
    ("feedback.safety IS NULL", "abcde"), ("feedback.safety IS NOT NULL", ""), ("feedback.safety != 'x'", ""),
    # kinds, backquoted and dotted names
    ("expectation.expected_answer = 'A table format'", "a"), ("feedback.expected_answer = 'A table format'", ""),
    ("feedback.`answer.quality` = 'good'", "c"), ("feedback.answer.quality = 'good'", "c"),
    # combined with each other and with the rest of the grammar
    ("feedback.correctness = 'yes' AND feedback.relevance > 0.5", "a"),
    ("feedback.correctness = 'no' OR feedback.relevance > 0.5", "abd"),
    ("(feedback.correctness = 'no' OR feedback.correctness = 'yes') AND NOT feedback.relevance < 0.5", "acd"),
    ("feedback.correctness = 'yes' AND span.type = 'RETRIEVER'", "a"),
    ("span.type = 'TOOL' AND span.status = 'ERROR' AND feedback.correctness = 'no'", "b"),
    ("trace.status = 'OK' AND NOT feedback.correctness IS NOT NULL", "e"),
    ("feedback.correctness = 'yes' OR tags.env = 'nope'", "ac"),
]  # fmt: skip


@pytest.mark.parametrize(("filter_string", "expected"), CASES, ids=[c[0] for c in CASES])
def test_feedback_filters(lake: Lake, filter_string: str, expected: str) -> None:
    page = search_traces(filter_string, max_results=100, warehouse=lake.warehouse)
    assert lake.letters(page["trace_id"]) == expected
    assert count_traces(filter_string, warehouse=lake.warehouse) == len(expected)


def test_feedback_filters_page_at_a_pinned_assessments_version(lake: Lake, tmp_path: Path) -> None:
    warehouse = str(tmp_path / "wh")
    shutil.copytree(lake.warehouse, warehouse)
    first = search_traces("feedback.correctness = 'no'", max_results=1, warehouse=warehouse)
    assert lake.letters(first["trace_id"]) == "d"  # newest first
    # between pages, a reviewer overrides b's "no": the walk keeps reading the first version
    judged = lake.rows["b_judge"]["assessment_id"]
    write_assessments(warehouse, [_assessment(lake.ids["b"], "correctness", "yes", at=9, overrides=judged)])
    rest = search_traces("feedback.correctness = 'no'", page_token=first.next_page_token, warehouse=warehouse)
    assert lake.letters(rest["trace_id"]) == "b" and rest.next_page_token is None
    assert count_traces("feedback.correctness = 'no'", warehouse=warehouse) == 1  # a new search sees the override


def test_an_override_replacing_a_judge_no_with_yes_changes_which_traces_match(lake: Lake, tmp_path: Path) -> None:
    warehouse = str(tmp_path / "wh")
    shutil.copytree(lake.bare, warehouse)
    e = lake.ids["e"]
    verdict = _assessment(e, "helpful", "no", at=1, source_type="LLM_JUDGE")
    write_assessments(warehouse, [verdict])
    assert [
        r["trace_id"] for r in scan_traces("feedback.helpful = 'no'", warehouse=warehouse).collect().to_dicts()
    ] == [e]
    write_assessments(warehouse, [_assessment(e, "helpful", "yes", at=2, overrides=verdict["assessment_id"])])
    assert scan_traces("feedback.helpful = 'no'", warehouse=warehouse).collect().is_empty()
    assert scan_traces("feedback.helpful = 'yes'", warehouse=warehouse).collect()["trace_id"].to_list() == [e]
    rate = scan_assessments(warehouse=warehouse).select(n=pl.len(), rate=value_as_number().mean()).collect()
    assert rate.row(0) == (1, 1.0)


def test_a_filter_of_many_feedback_clauses_runs(lake: Lake) -> None:
    """Each clause is one aggregation of one group_by over the assessments: linear in the clauses."""
    deadline = time.monotonic() + 20  # a hang guard, not a timing claim
    any_of = " OR ".join([*(f"feedback.n{i} = 'v'" for i in range(250)), "feedback.correctness = 'no'"])
    assert lake.letters(scan_traces(any_of, warehouse=lake.warehouse).collect()["trace_id"]) == "bd"
    all_of = " AND ".join([*(f"feedback.n{i} IS NULL" for i in range(250)), "feedback.correctness = 'yes'"])
    assert lake.letters(scan_traces(all_of, warehouse=lake.warehouse).collect()["trace_id"]) == "ac"
    assert time.monotonic() < deadline


BAD = [
    ("feedback.relevance > 'high'",
     "field 'feedback.relevance' is an assessment value and cannot be compared with the string 'high' at position 21 "
     "(<, <=, >, >= compare numbers)"),
    ("feedback.correctness LIKE 5", "expected a quoted pattern after LIKE at position 26, found '5'"),
    ("feedback = 'x'", "unknown field 'feedback' at position 0; valid fields: "),
    ("feedback.`` = 'x'", "unknown field 'feedback.' at position 0; valid fields: "),
]  # fmt: skip


@pytest.mark.parametrize(("filter_string", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_feedback_filters_are_one_line_errors(lake: Lake, filter_string: str, message: str) -> None:
    with pytest.raises(FilterError) as err:
        search_traces(filter_string, warehouse=lake.warehouse)
    assert str(err.value).startswith(message)
    with pytest.raises(FilterError, match="cannot order by 'feedback.relevance'"):
        search_traces(order_by=["feedback.relevance"], warehouse=lake.warehouse)


# --- get_trace --------------------------------------------------------------------------


def test_get_trace_returns_its_assessments(lake: Lake) -> None:
    trace = get_trace(lake.ids["a"], warehouse=lake.warehouse)
    got = {(x.name, x.valid, json.dumps(x.value)) for x in trace.assessments}
    assert got == {("expected_answer", True, '"A table format"'), ("correctness", False, '"no"'),
                   ("relevance", True, "0.9"), ("is_json", True, "true"), ("correctness", True, '"yes"')}  # fmt: skip
    assert [a.assessment_id for a in trace.assessments][0] == lake.rows["a_expected"]["assessment_id"]  # oldest first
    (human,) = trace.search_assessments("correctness")
    assert human.source.source_type == "HUMAN" and human.source.source_id == "alice" and human.value == "yes"
    assert human.overrides == lake.rows["a_judge"]["assessment_id"] and human.error is None
    assert len(trace.search_assessments("correctness", all=True)) == 2
    assert [a.name for a in trace.search_assessments(type="expectation")] == ["expected_answer"]
    assert trace.info.assessments == trace.assessments
    with pytest.raises(FilterError, match="type must be one of feedback, expectation, not 'label'"):
        trace.search_assessments(type="label")
    failed = get_trace(lake.ids["b"], warehouse=lake.warehouse).search_assessments("safety")[0]
    assert failed.value is None and failed.error.error_code == "SCORER_ERROR"


def test_traces_get_shows_assessments_in_the_tree_and_the_json(lake: Lake) -> None:
    from spanlake.cli import cli

    runner = CliRunner()
    a = lake.ids["a"]
    tree = runner.invoke(cli, ["traces", "get", a, "--warehouse", lake.warehouse])
    assert tree.exit_code == 0, tree.output
    lines = tree.stdout.splitlines()
    section = lines[lines.index("assessments:") + 1 :]
    assert len(section) == 5
    judge = next(line for line in section if "LLM_JUDGE" in line)
    assert judge == "  feedback correctness = \"no\"  [LLM_JUDGE gpt-4o-mini]  'misses the point'  (overridden)"
    assert (
        f'  feedback correctness = "yes"  [HUMAN alice]  overrides {lake.rows["a_judge"]["assessment_id"]}' in section
    )
    b = runner.invoke(cli, ["traces", "get", lake.ids["b"], "--warehouse", lake.warehouse]).stdout
    assert "  feedback safety: SCORER_ERROR ValueError: boom  [CODE test]" in b
    doc = json.loads(runner.invoke(cli, ["traces", "get", a, "--format", "json", "--warehouse", lake.warehouse]).stdout)
    assert {(x["name"], x["valid"]) for x in doc["assessments"]} == {
        ("expected_answer", True), ("correctness", False), ("relevance", True), ("is_json", True), ("correctness", True),
    }  # fmt: skip
    none = runner.invoke(cli, ["traces", "get", lake.ids["e"], "--warehouse", lake.warehouse]).stdout
    assert "assessments:" not in none


# --- the MLflow-shaped Trace ------------------------------------------------------------


def test_trace_answers_mlflow_attribute_names(lake: Lake) -> None:
    trace = get_trace(lake.ids["a"], warehouse=lake.warehouse)
    info = trace.info
    assert info.trace_id == info.request_id == lake.ids["a"] and info.state == info.status == info["state"] == "OK"
    assert info.execution_duration == info.execution_time_ms == info["duration_ms"] > 0
    assert info.request_time == info.timestamp_ms == int(info["request_time"].timestamp() * 1000)
    assert json.loads(info.request_preview) == {"question": "What is Delta?"}
    assert json.loads(info.response_preview) == {"answer": "A table format"}
    assert info.tags["env"] == "prod" and info.tags is info["tags"]
    assert info.trace_metadata == info.request_metadata == dict(info["metadata"])
    assert info.trace_metadata["service.name"] == "qa-bot"
    assert info.token_usage == {"input_tokens": 12, "output_tokens": 3, "total_tokens": 15}
    assert info.service_name == "qa-bot"  # any column reads as an attribute too
    with pytest.raises(AttributeError, match="TraceInfo has no field 'nope'"):
        info.nope  # noqa: B018

    spans = trace.data.spans
    assert [s.name for s in spans] == ["agent.request", "retrieve docs", "chat gpt-4o"]
    root, retriever, chat = spans
    assert root.parent_id is None and retriever.parent_id == chat.parent_id == root.span_id == info.root_span_id
    assert all(s.trace_id == lake.ids["a"] for s in spans)
    rows = trace.spans  # the dicts stay as they were
    assert root.start_time_ns == int(rows[0]["start_time"].timestamp() * 1_000_000) * 1000
    # stored in microseconds (duration_ms keeps the SDK's nanoseconds): equal to within 2 us
    assert abs(root.end_time_ns - root.start_time_ns - rows[0]["duration_ms"] * 1e6) < 2_000
    assert (root.span_type, retriever.span_type, chat.span_type) == ("AGENT", "RETRIEVER", "CHAT_MODEL")
    assert root.status.status_code == "UNSET" and chat.status == SpanStatus("UNSET", "")  # never set by the app
    assert root.inputs == {"question": "What is Delta?"} and root.outputs == {"answer": "A table format"}
    assert retriever.outputs == [{"id": 1}] and retriever.get_attribute("db.name") == "pg"
    assert retriever.attributes["mlflow.spanType"] == "RETRIEVER" and chat.get_attribute("nope") is None
    assert json.loads(trace.data.request) == {"question": "What is Delta?"}  # MLflow: the serialized text
    assert json.loads(trace.data.response) == {"answer": "A table format"}

    assert trace.search_spans(span_type="RETRIEVER") == [retriever]
    assert trace.search_spans(name="chat gpt-4o") == [chat] and trace.search_spans(name="chat") == []
    assert [s.name for s in trace.search_spans(name=re.compile(r"^(chat|retrieve)"))] == [
        "retrieve docs",
        "chat gpt-4o",
    ]
    assert trace.search_spans(span_id=chat.span_id) == [chat] and trace.search_spans(span_type="TOOL") == []
    with pytest.raises(FilterError, match="name must be a string or a compiled regex, not int"):
        trace.search_spans(name=5)  # type: ignore[arg-type]
    assert isinstance(trace.spans_frame(), pl.DataFrame) and trace.spans_frame().height == 3

    text = get_trace(lake.ids["b"], warehouse=lake.warehouse)
    assert text.data.spans[0].inputs == "hello" and text.data.request == "hello"  # text stays text
    (tool,) = text.search_spans(span_type="TOOL")
    assert tool.status.status_code == "ERROR" and tool.status.description == "timed out"


def test_a_scorer_body_written_for_mlflow_runs_on_it(lake: Lake) -> None:
    """The bodies of scorers from MLflow 3's documentation (custom code scorers), unchanged."""
    from spanlake.query import Trace

    def retrieved_something(trace: Trace) -> bool:
        retrieval_spans = trace.search_spans(span_type="RETRIEVER")
        return any(span.outputs for span in retrieval_spans)

    def llm_response_time_good(trace: Trace) -> str:
        llm_span = trace.search_spans(span_type="CHAT_MODEL")[0]
        response_time = (llm_span.end_time_ns - llm_span.start_time_ns) / 1e9  # second
        return "yes" if response_time <= 5.0 else "no"

    def no_tool_errors(trace: Trace) -> bool:
        return not [s for s in trace.data.spans if s.span_type == "TOOL" and s.status.status_code == "ERROR"]

    def fast_enough(trace: Trace) -> bool:
        return trace.info.execution_duration < 60_000 and trace.info.state == "OK"

    a = get_trace(lake.ids["a"], warehouse=lake.warehouse)
    b = get_trace(lake.ids["b"], warehouse=lake.warehouse)
    assert (retrieved_something(a), retrieved_something(b)) == (True, False)
    assert llm_response_time_good(a) == llm_response_time_good(b) == "yes"
    assert (no_tool_errors(a), no_tool_errors(b)) == (True, False)
    assert fast_enough(a)
