"""Model calls that report less than they should, end to end: spans made with the OpenTelemetry
SDK exactly as the README's exporter snippet sets it up, attributes shaped as MLflow, OpenInference
and a hand-made span write them, through the real broker and `spanlake ingest` into Delta."""

from __future__ import annotations

import polars as pl
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode
from support import create_topic, ingest_subprocess, read
from test_conventions import (
    HAND_MADE_MODEL_CALL,
    MLFLOW_OPENAI_EMBEDDINGS,
    MLFLOW_OPENAI_FAILED_CHAT,
    OPENINFERENCE_OPENAI_FAILED_CHAT,
)

from spanlake.exporter import KafkaSpanExporter
from spanlake.settings import Settings


def produce(settings: Settings) -> dict[str, str]:
    """One trace per case, each a root with one child; returns root span name -> trace id."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(KafkaSpanExporter(settings.bootstrap_servers, settings.topic)))
    tracer = provider.get_tracer("test")
    cases = {
        "hand-made": (HAND_MADE_MODEL_CALL, False),
        "mlflow-failed": (MLFLOW_OPENAI_FAILED_CHAT, True),
        "openinference-failed": (OPENINFERENCE_OPENAI_FAILED_CHAT, True),
        "mlflow-embeddings": (MLFLOW_OPENAI_EMBEDDINGS, False),
    }
    trace_ids = {}
    for name, (attrs, fails) in cases.items():
        with tracer.start_as_current_span(name) as root:
            trace_ids[name] = f"{root.get_span_context().trace_id:032x}"
            with tracer.start_as_current_span("call", attributes=attrs, record_exception=False) as call:
                if fails:  # as the autologgers end a call that raised: an exception event, status ERROR
                    call.record_exception(RuntimeError("429 Too Many Requests"))
                    call.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))
    provider.shutdown()
    return trace_ids


def test_model_calls_missing_model_or_usage_through_ingest(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    trace_ids = produce(settings)
    done = ingest_subprocess(settings)
    assert done.returncode == 0, done.stderr

    calls = read(settings, "span_data").filter(pl.col("name") == "call")
    by_trace = {row["trace_id"]: row for row in calls.iter_rows(named=True)}
    got = {name: by_trace[trace_id] for name, trace_id in trace_ids.items()}
    fields = ("span_type", "model", "status_code", "input_tokens", "output_tokens", "total_tokens")
    assert {name: tuple(row[f] for f in fields) for name, row in got.items()} == {
        "hand-made": ("LLM", "gpt-4o-mini", "UNSET", 812, 64, 876),
        "mlflow-failed": ("CHAT_MODEL", "gpt-4o-mini", "ERROR", None, None, None),
        "openinference-failed": ("LLM", "gpt-4o", "ERROR", None, None, None),
        "mlflow-embeddings": ("EMBEDDING", "text-embedding-3-small", "UNSET", 6, None, 6),
    }

    traces = read(settings, "trace_info")
    rows = {row["trace_id"]: row for row in traces.iter_rows(named=True)}
    summary = {
        name: (rows[t]["llm_call_count"], rows[t]["total_tokens"], rows[t]["models"]) for name, t in trace_ids.items()
    }
    assert summary == {
        "hand-made": (1, 876, ["gpt-4o-mini"]),
        "mlflow-failed": (1, None, ["gpt-4o-mini"]),
        "openinference-failed": (1, None, ["gpt-4o"]),
        "mlflow-embeddings": (1, 6, ["text-embedding-3-small"]),
    }

    # The README's "error rate by model" now counts the failed calls under the model they asked for.
    rates = (
        calls.filter(pl.col("model").is_not_null())
        .group_by("model")
        .agg(calls=pl.len(), errors=(pl.col("status_code") == "ERROR").sum())
        .sort("model")
    )
    assert rates.rows() == [("gpt-4o", 1, 1), ("gpt-4o-mini", 2, 1), ("text-embedding-3-small", 1, 0)]
