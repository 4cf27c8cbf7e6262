"""Trace-level semantics of a batch's spans (no Kafka): tokens counted once per call, tags and
metadata from the root, error counts, IN_PROGRESS until the root arrives."""

from __future__ import annotations

import datetime as dt

import orjson

from spanlake.ingest.otlp import Span
from spanlake.ingest.rows import SpanRows

NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.timezone.utc)
T0 = int(NOW.timestamp() * 1e9)
RESOURCE = {"service.name": "rag-api", "deployment.environment.name": "prod"}


def span(span_id: str, parent: str | None, attrs: dict, *, status: str = "UNSET", events=(), start_ms: int = 0) -> Span:
    return Span("a" * 32, span_id * 16, parent and parent * 16, f"span {span_id}", "INTERNAL", T0 + start_ms * 10**6,
                T0 + (start_ms + 10) * 10**6, status, None, attrs, list(events), RESOURCE)  # fmt: skip


def trace_row(*spans: Span) -> dict:
    rows = SpanRows()
    for s in spans:
        rows.add(s, "t", 0, 0)
    return rows.trace_table(rows.table(NOW), NOW).to_pylist()[0]


def test_a_framework_llm_span_around_the_sdk_span_counts_its_tokens_once() -> None:
    row = trace_row(
        span("1", None, {"mlflow.spanType": '"CHAIN"', "mlflow.traceTag.team": '"search"', "user.id": "u-7",
                         "mlflow.spanInputs": '"why?"'}),
        # OpenInference LangChain LLM span, and inside it the OpenAI SDK's GenAI span: one call
        span("2", "1", {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o",
                        "llm.token_count.prompt": 100, "llm.token_count.completion": 20}),
        span("3", "2", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
                        "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20}),
        span("4", "1", {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}, status="ERROR"),
        span("5", "1", {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "e5",
                        "gen_ai.usage.input_tokens": 8}),
    )  # fmt: skip
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (108, 20, 128)
    assert row["llm_call_count"] == 3
    assert (row["state"], row["error_count"], row["span_count"]) == ("OK", 1, 5)
    assert dict(row["tags"])["team"] == "search"
    assert dict(row["metadata"])["mlflow.trace.user"] == "u-7"
    assert dict(row["metadata"])["service.name"] == "rag-api"
    assert row["user_id"] == "u-7" and row["environment"] == "prod"
    assert row["request_preview"] == "why?"
    assert set(row["models"]) == {"gpt-4o", "e5"}


def test_an_exception_event_on_the_root_makes_the_trace_an_error() -> None:
    event = {"name": "exception", "time_unix_nano": T0, "attributes": {"exception.type": "ValueError"}}
    row = trace_row(span("1", None, {}, events=[event]), span("2", "1", {}))
    assert (row["state"], row["error_count"]) == ("ERROR", 1)


def test_spans_without_usage_leave_tokens_null_and_a_rootless_trace_in_progress() -> None:
    row = trace_row(span("2", "1", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}))
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (None, None, None)
    assert row["state"] == "IN_PROGRESS" and row["root_span_name"] is None
    rows = SpanRows()
    rows.add(span("2", "1", {"k": 1}), "t", 0, 0)
    assert orjson.loads(rows.table(NOW).column("attributes")[0].as_py()) == {"k": 1}
