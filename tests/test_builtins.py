"""Each built-in scorer on hand-made traces, with a case where its condition holds, one where it
does not, and (where it applies) one where it records nothing."""

from __future__ import annotations

import polars as pl
import pytest
from scoring_support import Lake, S

from spanlake.errors import ScoringError
from spanlake.jobs.builtins import (
    AnySpanFailed,
    InvalidJSON,
    LacksCitations,
    LatencyOverThreshold,
    PIIDetection,
    RefusalDetected,
    RegexMatch,
    ResponseLength,
    RetrievalEmpty,
    TokenBudgetExceeded,
    ToolCallFailed,
    TraceFailed,
    builtin_scorers,
)  # fmt: skip
from spanlake.jobs.runner import score_traces

TOKENS = {"llm.token_count.prompt": 600, "llm.token_count.completion": 500}
CASES = {
    "plain": S("agent", "AGENT", "hi", "Delta Lake is a table format [1].", ms=50),
    "slow_failed": S("agent", "AGENT", "hi", "I'm sorry, but I can't help with that.", ms=2500, error=True),
    "bad_tool": S("agent", "AGENT", "hi", '{"answer": "see https://delta.io"}', children=[
        S("search", "TOOL", "q", None, error=True), S("lookup", "TOOL", "q", "ok"), S("llm", "LLM", "p", "r", attrs=TOKENS),
    ]),
    "good_tool": S("agent", "AGENT", "hi", "Mail me at jane.doe@example.com", children=[
        S("search", "TOOL", "q", "found"), S("docs", "RETRIEVER", "q", '[{"doc": 1}]'),
    ]),
    "empty_retrieval": S("agent", "AGENT", "hi", "Card 4111 1111 1111 1111, not 4111 1111 1111 1112", children=[
        S("docs", "RETRIEVER", "q", "[]"), S("docs2", "RETRIEVER", "q", '[{"doc": 2}]'),
    ]),
    "secrets": S("agent", "AGENT", "hi", "key sk-proj-abcdefghijklmnopqrstuvwxyz012345 from 10.0.0.12, call +44 20 7946 0958"),
    "no_output": S("agent", "AGENT", "hi", None),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    lake = Lake(str(tmp_path_factory.mktemp("builtins") / "warehouse"))
    ids = dict(zip(CASES, lake.add(*CASES.values())))
    scorers = [
        *builtin_scorers(), LatencyOverThreshold(max_ms=1000), TokenBudgetExceeded(max_tokens=1000),
        ResponseLength(max_length=35), ResponseLength(min_length=4, max_length=7, unit="words", name="words_4_to_7"),
        RegexMatch(r"(?i)delta"),
    ]  # fmt: skip
    found = score_traces(pl.DataFrame({"trace_id": list(ids.values())}), scorers, warehouse=lake.warehouse)
    assert found["error_code"].null_count() == found.height, found.filter(pl.col("error_code").is_not_null())
    case_of = {v: k for k, v in ids.items()}
    out: dict[str, dict[str, object]] = {}
    for row in found.iter_rows(named=True):
        value = row["value_bool"] if row["value_type"] == "bool" else row["value_number"]
        out.setdefault(row["name"], {})[case_of[row["trace_id"]]] = value
        if row["rationale"]:
            out.setdefault(row["name"] + "/rationale", {})[case_of[row["trace_id"]]] = row["rationale"]
    return out


def holds(results: dict[str, dict[str, object]], name: str) -> set[str]:
    return {case for case, value in results.get(name, {}).items() if value is True}


def test_trace_and_span_failures(results) -> None:
    assert holds(results, "trace_failed") == {"slow_failed"}
    assert set(results["trace_failed"]) == set(CASES)
    assert holds(results, "any_span_failed") == {"slow_failed", "bad_tool"}
    assert results["tool_call_failed"] == {"bad_tool": True, "good_tool": False}  # no tool span: nothing recorded
    assert results["retrieval_empty"] == {"good_tool": False, "empty_retrieval": True}


def test_latency_and_token_budget(results) -> None:
    assert holds(results, "latency_over_threshold") == {"slow_failed"}
    assert results["token_budget_exceeded"] == {"bad_tool": True}  # the only trace with token counts


def test_text_rules(results) -> None:
    lengths = results["response_length_out_of_bounds"]
    assert {k for k, v in lengths.items() if v} == {"slow_failed", "empty_retrieval", "secrets"}
    assert "no_output" not in lengths
    # 7 words, 4 words (in bounds); 8 words, 3 words (out)
    words = results["words_4_to_7"]
    assert (words["plain"], words["good_tool"], words["slow_failed"], words["bad_tool"]) == (False, False, True, True)
    assert holds(results, "regex_match") == {"plain", "bad_tool"}
    assert holds(results, "lacks_citations") == {"slow_failed", "good_tool", "empty_retrieval", "secrets"}
    assert holds(results, "refusal_detected") == {"slow_failed"}
    assert holds(results, "invalid_json") == set(CASES) - {"bad_tool", "no_output"}
    assert "no_output" not in results["invalid_json"]


def test_pii_detection_names_what_it_found(results) -> None:
    assert holds(results, "pii_detected") == {"good_tool", "empty_retrieval", "secrets"}
    assert results["pii_detected/rationale"] == {
        "good_tool": "found: email",
        "empty_retrieval": "found: payment_card",  # only the number that passes Luhn
        "secrets": "found: openai_anthropic_key, phone, ip_address",
    }
    assert PIIDetection().kinds("card 4111 1111 1111 1112 and build 1.2.3") == []


def test_settings_are_checked_and_versioned() -> None:
    with pytest.raises(ScoringError, match=r"RegexMatch: invalid regex '\(': error: unclosed group"):
        RegexMatch("(")
    with pytest.raises(ScoringError, match="ResponseLength needs min_length, max_length or both"):
        ResponseLength()
    assert LatencyOverThreshold(max_ms=10).version != LatencyOverThreshold(max_ms=20).version
    assert LatencyOverThreshold(max_ms=10).version == LatencyOverThreshold(max_ms=10.0).version
    assert {s.name for s in builtin_scorers()} >= {"trace_failed", "pii_detected", "invalid_json"}
    assert AnySpanFailed().vectorized and ToolCallFailed().params == ("traces", "spans")
    assert RetrievalEmpty().params == ("traces", "spans") and not TraceFailed().session_level
    assert InvalidJSON().name == "invalid_json" and LacksCitations(pattern=r"\[\d+\]").pattern == r"\[\d+\]"
    assert RefusalDetected().name == "refusal_detected" and TokenBudgetExceeded(5).max_tokens == 5
