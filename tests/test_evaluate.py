"""evaluate over stored traces (ids, filter string, search page) and over rows; the human API
(log_feedback, log_expectation, override_feedback) and write_assessments' commit."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction
from scoring_support import Lake, S

from spanlake import Feedback, evaluate, log_expectation, log_feedback, override_feedback, scorer
from spanlake.errors import ScoringError
from spanlake.jobs import EvaluationResult
from spanlake.jobs.assessments import write_assessments
from spanlake.jobs.builtins import LatencyOverThreshold
from spanlake.query import search_traces
from spanlake.tables import scan


@scorer(aggregations=["mean", "min", "max", "p90", "variance", "median"])
def answer_len(outputs):
    return len(str(outputs))


@scorer
def matches(outputs, expectations):
    if "expected" not in expectations:
        return None
    return Feedback(value="yes" if outputs == expectations["expected"] else "no", rationale="compared")


def _lake(tmp_path: Path) -> tuple[str, list[str]]:
    lake = Lake(str(tmp_path / "warehouse"))
    ids = lake.add(S("agent", "AGENT", "q1", "abcd", ms=10), S("agent", "AGENT", "q2", "abcdefgh", ms=3000, error=True))
    log_expectation(trace_id=ids[0], name="expected", value="abcd", warehouse=lake.warehouse)
    log_expectation(trace_id=ids[1], name="expected", value="other", warehouse=lake.warehouse)
    return lake.warehouse, ids


def test_evaluate_over_stored_traces_in_each_form(tmp_path: Path) -> None:
    warehouse, ids = _lake(tmp_path)
    scorers = [answer_len, matches, LatencyOverThreshold(max_ms=1000)]
    by_ids = evaluate(ids, scorers, warehouse=warehouse)
    assert isinstance(by_ids, EvaluationResult)
    assert by_ids.result_df.columns == [
        "trace_id", "answer_len/value", "answer_len/rationale", "answer_len/error", "matches/value",
        "matches/rationale", "matches/error", "latency_over_threshold/value", "latency_over_threshold/rationale",
        "latency_over_threshold/error",
    ]  # fmt: skip
    assert by_ids.result_df.select("trace_id", "answer_len/value", "matches/value", "latency_over_threshold/value").rows() == [
        (ids[0], 4.0, "yes", False), (ids[1], 8.0, "no", True),
    ]  # fmt: skip
    assert by_ids.metrics == {
        "answer_len/mean": 6.0, "answer_len/min": 4.0, "answer_len/max": 8.0, "answer_len/p90": pytest.approx(7.6),
        "answer_len/variance": 4.0, "answer_len/median": 6.0, "matches/mean": 0.5, "latency_over_threshold/mean": 0.5,
    }  # fmt: skip
    stored = scan("assessments", warehouse=warehouse).filter(pl.col("run_id") == by_ids.run_id).collect()
    assert stored.height == 6 and set(stored["kind"]) == {"feedback"}

    by_filter = evaluate("trace.status = 'ERROR'", [answer_len], warehouse=warehouse, start_time="2025-01-01")
    assert by_filter.result_df["trace_id"].to_list() == [ids[1]]
    page = search_traces(warehouse=warehouse, max_results=1)
    by_page = evaluate(page, [answer_len], warehouse=warehouse)
    assert by_page.result_df["trace_id"].to_list() == page["trace_id"].to_list()
    assert len({by_ids.run_id, by_filter.run_id, by_page.run_id}) == 3
    with pytest.raises(ScoringError, match="nothing to evaluate: the filter \"trace.status = 'UNSET'\" selects no traces"):
        evaluate("trace.status = 'UNSET'", [answer_len], warehouse=warehouse)


def test_evaluate_over_rows_generates_trace_ids(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "warehouse")
    rows = [
        {"inputs": {"q": "capital of France"}, "outputs": "Paris", "expectations": {"expected": "Paris"}},
        {"inputs": {"q": "2+2"}, "outputs": "5", "expectations": {"expected": "4"}, "trace_id": "ab" * 16},
    ]
    result = evaluate(rows, [matches, answer_len], warehouse=warehouse)
    generated, given = result.result_df["trace_id"].to_list()
    assert len(generated) == 32 and int(generated, 16) >= 0 and given == "ab" * 16
    assert result.result_df["matches/value"].to_list() == ["yes", "no"]
    assert result.metrics["matches/mean"] == 0.5
    frame = evaluate(pl.DataFrame({"inputs": ["a"], "outputs": ["bb"]}), [answer_len], warehouse=warehouse)
    assert frame.metrics["answer_len/mean"] == 2.0
    with pytest.raises(ScoringError, match="evaluation row 0 has no `inputs` \\(it has outputs\\)"):
        evaluate([{"outputs": "x"}], [answer_len], warehouse=warehouse)


def test_human_feedback_expectations_and_overrides(tmp_path: Path) -> None:
    warehouse, ids = _lake(tmp_path)
    judged = evaluate(ids, [matches], warehouse=warehouse)
    verdict = scan("assessments", warehouse=warehouse).filter(
        pl.col("run_id") == judged.run_id, pl.col("trace_id") == ids[1]
    ).collect()
    new_id = override_feedback(
        trace_id=ids[1], assessment_id=verdict["assessment_id"][0], value="yes", rationale="close enough",
        warehouse=warehouse,
    )  # fmt: skip
    logged = log_feedback(trace_id=ids[0], name="thumbs", value=True, metadata={"ui": 1}, warehouse=warehouse)
    rows = scan("assessments", warehouse=warehouse).collect()
    override = rows.filter(pl.col("assessment_id") == new_id).row(0, named=True)
    assert (override["name"], override["value_string"], override["overrides"], override["source_type"]) == (
        "matches", "yes", verdict["assessment_id"][0], "HUMAN",
    )  # fmt: skip
    assert rows.filter(pl.col("assessment_id") == verdict["assessment_id"][0]).height == 1  # the old row stays
    thumbs = rows.filter(pl.col("assessment_id") == logged).row(0, named=True)
    assert (thumbs["value_type"], thumbs["value_bool"], thumbs["metadata"], thumbs["run_id"]) == ("bool", True, {"ui": "1"}, None)

    # a later expectation of the same name is what scorers see
    log_expectation(trace_id=ids[1], name="expected", value="abcdefgh", warehouse=warehouse)
    assert evaluate(ids, [matches], warehouse=warehouse).result_df["matches/value"].to_list() == ["yes", "yes"]

    with pytest.raises(ScoringError, match=f"no assessment 'nope' on trace {ids[0]} in .* to override"):
        override_feedback(trace_id=ids[0], assessment_id="nope", value=1, warehouse=warehouse)
    with pytest.raises(ScoringError, match="feedback 'feedback' on trace x needs a value or an error"):
        log_feedback(trace_id="x", warehouse=warehouse)
    with pytest.raises(ScoringError, match="a value must be a bool, number, string, list or dict, not set"):
        log_feedback(trace_id="x", value={1}, warehouse=warehouse)


def test_write_assessments_commits_once_with_the_jobs_txn(tmp_path: Path) -> None:
    warehouse, ids = _lake(tmp_path)
    from spanlake.jobs.runner import score_traces

    results = score_traces(pl.DataFrame({"trace_id": ids}), [answer_len], warehouse=warehouse)
    table = DeltaTable(f"{warehouse}/assessments")
    before = table.version()
    txn = CommitProperties(app_transactions=[Transaction("spanlake:scorers", 7)])
    assert write_assessments(results, run_id="run-1", warehouse=warehouse, commit_properties=txn) == 2
    table.update_incremental()
    assert table.version() == before + 1 and table.transaction_version("spanlake:scorers") == 7
    empty = results.head(0)
    assert write_assessments(empty, run_id="run-2", warehouse=warehouse) == 0
    assert DeltaTable(f"{warehouse}/assessments").version() == before + 1  # nothing to write: no commit
    with pytest.raises(ScoringError, match="write_assessments: results lack the columns trace_id"):
        write_assessments(results.drop("trace_id"), run_id=None, warehouse=warehouse)


def test_the_readme_scoring_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("### Scoring traces", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    warehouse, ids = _lake(tmp_path)
    monkeypatch.setenv("SPANLAKE_WAREHOUSE", warehouse)
    names: dict = {}
    exec(block, names)  # noqa: S102 - our own README
    result = names["result"]
    assert result.result_df["trace_id"].to_list() == [ids[0]]  # the OK trace
    assert result.metrics == {"concise/mean": 1.0, "latency_over_threshold/mean": 0.0, "pii_detected/mean": 0.0}
    assert names["too_long"].is_empty()
    review = scan("assessments", warehouse=warehouse).filter(pl.col("assessment_id") == names["review"]).collect()
    assert review["name"].to_list() == ["helpful"]
