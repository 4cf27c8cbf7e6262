"""score_traces over hand-made traces written through DeltaSink: each scorer signature, scorers
copied from MLflow's documentation, errors and timeouts recorded (never raised), thread-pool
scorers, vectorized scorers and what a scorer may return."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from scoring_support import Lake, S

from spanlake import Feedback, log_expectation
from spanlake.errors import ScoringError
from spanlake.jobs.runner import score_traces
from spanlake.jobs.scorer import Scorer, scorer
from spanlake.query.traces import Trace


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    lake = Lake(str(tmp_path_factory.mktemp("scoring") / "warehouse"))
    ids = lake.add(
        S("agent", "AGENT", {"question": "What is Delta?"}, "A table format",
          children=[S("search", "TOOL", {"q": "delta"}, "[1 doc]", offset_ms=1), S("llm", "LLM", "p", "r", offset_ms=2)]),
        S("agent", "AGENT", "plain text question", {"answer": "42", "sources": []}, ms=900, error=True),
        session="s1",
    )  # fmt: skip
    ids += lake.add(S("agent", "AGENT", {"question": "hi"}, "Hello there, friend"))
    log_expectation(trace_id=ids[0], name="expected_response", value="wrong", warehouse=lake.warehouse)
    log_expectation(trace_id=ids[0], name="expected_response", value="A table format", warehouse=lake.warehouse)
    log_expectation(trace_id=ids[0], name="facts", value=["delta", "table"], warehouse=lake.warehouse)
    return lake.warehouse, ids


def run(lake: tuple[str, list[str]], *scorers: Scorer, ids: list[str] | None = None, **kw: Any) -> pl.DataFrame:
    warehouse, all_ids = lake
    frame = pl.DataFrame({"trace_id": ids or all_ids})
    return score_traces(frame, scorers, warehouse=warehouse, **kw)


def by_trace(results: pl.DataFrame, name: str, column: str) -> dict[str, Any]:
    rows = results.filter(pl.col("name") == name)
    return dict(zip(rows["trace_id"], rows[column]))


def test_each_parameter_gets_what_the_trace_holds(lake) -> None:
    seen: dict[str, dict[str, Any]] = {}

    @scorer
    def io(inputs, outputs):
        seen.setdefault("io", {})[str(inputs)] = outputs
        return True

    @scorer
    def expect(expectations):
        seen.setdefault("expect", {})[len(seen.get("expect", {}))] = expectations
        return len(expectations)

    @scorer
    def tree(trace):
        assert isinstance(trace, Trace)
        return ",".join(f"{s['depth']}:{s['name']}" for s in trace.spans)

    results = run(lake, io, expect, tree)
    _, ids = lake
    assert seen["io"] == {
        "{'question': 'What is Delta?'}": "A table format",  # JSON parsed, text kept as text
        "plain text question": {"answer": "42", "sources": []},
        "{'question': 'hi'}": "Hello there, friend",
    }
    assert list(seen["expect"].values()) == [
        {"expected_response": "A table format", "facts": ["delta", "table"]}, {}, {},  # the latest per name
    ]  # fmt: skip
    assert by_trace(results, "expect", "value_number") == {ids[0]: 2.0, ids[1]: 0.0, ids[2]: 0.0}
    assert by_trace(results, "tree", "value_string") == {ids[0]: "0:agent,1:search,1:llm", ids[1]: "0:agent", ids[2]: "0:agent"}
    assert set(results["source_type"]) == {"CODE"} and results["scorer_version"].null_count() == 0


def test_a_session_scorer_runs_once_per_session_with_its_traces_in_order(lake) -> None:
    calls = []

    @scorer
    def turns(session):
        calls.append([t.trace_id for t in session])
        return Feedback(value=len(session), rationale=f"{len(session)} turns")

    results = run(lake, turns)
    _, ids = lake
    assert calls == [[ids[0], ids[1]]]  # the third trace has no session
    assert results.select("trace_id", "value_number", "rationale").rows() == [(ids[1], 2.0, "2 turns")]
    # a session scored from one of its traces still sees all of them
    assert run(lake, turns, ids=[ids[0]])["value_number"].to_list() == [2.0]


# Copied from mlflow.org's "Custom code-based scorers" page; only the import lines changed
# (were: from mlflow.genai.scorers import scorer; from mlflow.entities import Feedback).
from spanlake import Feedback as MLflowFeedback  # noqa: E402
from spanlake import scorer as mlflow_scorer  # noqa: E402


@mlflow_scorer
def exact_match(outputs: dict, expectations: dict) -> bool:
    return outputs == expectations["expected_response"]


@mlflow_scorer
def is_short(outputs: dict) -> MLflowFeedback:
    score = len(outputs.split()) <= 5
    rationale = (
        "The response is short enough."
        if score
        else f"The response is not short enough because it has ({len(outputs.split())} words)."
    )
    return MLflowFeedback(value=score, rationale=rationale)


@mlflow_scorer
def multi_aspect_check(outputs) -> list[MLflowFeedback]:
    return [
        MLflowFeedback(name="has_greeting", value="hello" in str(outputs).lower(), rationale="Greeting check"),
        MLflowFeedback(name="word_count", value=len(str(outputs).split()), rationale="Word count"),
    ]


def test_scorers_from_mlflows_documentation_run_unchanged(lake) -> None:
    _, ids = lake
    results = run(lake, exact_match, is_short, multi_aspect_check, ids=[ids[0], ids[2]])
    assert by_trace(results, "exact_match", "value_bool") == {ids[0]: True, ids[2]: None}
    # the trace without expectations: expectations["expected_response"] raises KeyError, recorded
    assert by_trace(results, "exact_match", "error_message") == {ids[0]: None, ids[2]: "KeyError: 'expected_response'"}
    assert by_trace(results, "is_short", "value_bool") == {ids[0]: True, ids[2]: True}
    assert by_trace(results, "is_short", "rationale")[ids[0]] == "The response is short enough."
    assert by_trace(results, "has_greeting", "value_bool") == {ids[0]: False, ids[2]: True}
    assert by_trace(results, "word_count", "value_number") == {ids[0]: 3.0, ids[2]: 3.0}
    assert set(results.filter(pl.col("name") == "word_count")["scorer"]) == {"multi_aspect_check"}


def test_errors_timeouts_and_bad_returns_are_recorded_and_the_run_goes_on(lake) -> None:
    @scorer
    def boom(outputs):
        raise ValueError("cannot score this")

    @scorer(timeout=0.2)
    def slow(inputs):
        while True:  # a busy loop: no sleep to be interrupted in
            pass

    @scorer
    def a_set(outputs):
        return {1, 2}

    @scorer
    def an_int_array(outputs):
        return np.array([1, 2])

    @scorer
    def numpy_scalar(outputs):
        return np.float32(0.5)

    @scorer
    def nothing(outputs):
        return None

    @scorer
    def swallows(inputs):  # catching Exception does not stop the timeout
        try:
            time.sleep(5)
        except Exception:
            return "caught"

    swallows.timeout = 0.2
    started = time.monotonic()
    results = run(lake, boom, slow, a_set, an_int_array, numpy_scalar, nothing, swallows)
    assert time.monotonic() - started < 5
    codes = results.group_by("name").agg(pl.col("error_code").unique()).rows()
    assert dict((n, sorted(c, key=str)) for n, c in codes) == {
        "boom": ["SCORER_ERROR"], "slow": ["SCORER_TIMEOUT"], "a_set": ["SCORER_ERROR"],
        "an_int_array": ["SCORER_ERROR"], "numpy_scalar": [None], "swallows": ["SCORER_TIMEOUT"],
    }  # fmt: skip
    messages = by_trace(results, "boom", "error_message")
    assert set(messages.values()) == {"ValueError: cannot score this"}
    assert set(by_trace(results, "slow", "error_message").values()) == {"scorer 'slow' ran past its timeout of 0.2 s"}
    assert set(by_trace(results, "a_set", "error_message").values()) == {
        "scorer 'a_set' returned a set; a scorer returns a bool, int, float, str, Feedback, a list of Feedback, or None"
    }
    assert "returned a ndarray" in next(iter(by_trace(results, "an_int_array", "error_message").values()))
    assert set(by_trace(results, "numpy_scalar", "value_number").values()) == {0.5}
    assert results.filter(pl.col("error_code").is_not_null())["value_type"].null_count() == results.filter(
        pl.col("error_code").is_not_null()
    ).height


def test_timeouts_hold_off_the_main_thread_too(lake) -> None:
    @scorer(timeout=0.3)
    def spin(outputs):
        end = time.monotonic() + 3
        while time.monotonic() < end:
            pass
        return True

    out: list[pl.DataFrame] = []
    worker = threading.Thread(target=lambda: out.append(run(lake, spin)))
    started = time.monotonic()
    worker.start()
    worker.join(30)
    assert time.monotonic() - started < 3
    assert out[0]["error_code"].to_list() == ["SCORER_TIMEOUT"] * 3


class SlowJudge(Scorer):
    """An I/O-bound scorer, as LLM judges are: 8 calls at once."""

    concurrency = 8

    def __init__(self, delay: float, **kw: Any) -> None:
        super().__init__("slow_judge", params=("outputs",), **kw)
        self.delay = delay
        self.threads: set[str] = set()

    def __call__(self, outputs: Any) -> Feedback:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        return Feedback(value="yes", rationale=str(outputs)[:10])


def test_scorers_with_concurrency_run_in_a_pool_of_that_size(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "w"))
    ids = lake.add(*[S("agent", "AGENT", {"q": i}, f"answer {i}") for i in range(24)])
    judge = SlowJudge(0.25)
    started = time.monotonic()
    results = score_traces(pl.DataFrame({"trace_id": ids}), [judge], warehouse=lake.warehouse)
    elapsed = time.monotonic() - started
    assert elapsed < 24 * 0.25 / 3  # 3 rounds of 8, not 24 calls in a row
    assert len(judge.threads) == 8 and all(t.startswith("scorer-slow_judge") for t in judge.threads)
    assert results["trace_id"].to_list() == ids  # in trace order
    assert results["rationale"].to_list() == [f"answer {i}"[:10] for i in range(24)]

    late = SlowJudge(5, timeout=0.3)  # the pool's calls time out by the watchdog
    started = time.monotonic()
    results = score_traces(pl.DataFrame({"trace_id": ids[:8]}), [late], warehouse=lake.warehouse)
    assert time.monotonic() - started < 5
    assert results["error_code"].to_list() == ["SCORER_TIMEOUT"] * 8


def test_vectorized_scorers_return_expressions_series_or_structs(lake) -> None:
    _, ids = lake

    @scorer(vectorized=True)
    def slow_trace(traces):
        return pl.col("duration_ms") > 100

    @scorer(vectorized=True)
    def output_chars(traces):
        return traces["outputs"].str.len_chars()

    @scorer(vectorized=True)
    def with_reason(traces):
        return pl.struct(value=pl.col("state") == "ERROR", rationale=pl.lit("state is ") + pl.col("state"))

    @scorer(vectorized=True)
    def span_count(traces, spans):
        counts = spans.group_by("trace_id").len()
        return traces.join(counts, on="trace_id", how="left", maintain_order="left")["len"]

    @scorer(vectorized=True)
    def wrong_length(traces):
        return pl.Series([True])

    @scorer(vectorized=True)
    def only_some(traces):
        return pl.when(pl.col("state") == "ERROR").then(pl.lit("failed"))

    results = run(lake, slow_trace, output_chars, with_reason, span_count, wrong_length, only_some)
    assert by_trace(results, "slow_trace", "value_bool") == {ids[0]: False, ids[1]: True, ids[2]: False}
    assert by_trace(results, "output_chars", "value_number") == {ids[0]: 14.0, ids[1]: 31.0, ids[2]: 19.0}
    assert by_trace(results, "with_reason", "rationale") == {ids[0]: "state is OK", ids[1]: "state is ERROR", ids[2]: "state is OK"}
    assert by_trace(results, "span_count", "value_number") == {ids[0]: 3.0, ids[1]: 1.0, ids[2]: 1.0}
    assert set(by_trace(results, "wrong_length", "error_message").values()) == {
        "TypeError: a vectorized scorer returned 1 values for 3 traces"
    }
    assert by_trace(results, "only_some", "value_string") == {ids[1]: "failed"}  # null: nothing recorded


def test_bad_arguments_are_refused_up_front(lake) -> None:
    def plain(outputs):
        return True

    with pytest.raises(ScoringError, match=r"scorers\[0\] is a function, not a Scorer; decorate it with @scorer"):
        run(lake, plain)  # type: ignore[arg-type]
    with pytest.raises(ScoringError, match="two scorers are named 'exact_match'"):
        run(lake, exact_match, exact_match)
    with pytest.raises(ScoringError, match=r"1 trace\(s\) to score are not in .* trace_info, e.g. 'f+'"):
        run(lake, exact_match, ids=["f" * 32])


def test_progress_is_reported_in_traces(lake) -> None:
    seen: list[int] = []
    run(lake, is_short, on_progress=seen.append)
    assert seen == [3]
