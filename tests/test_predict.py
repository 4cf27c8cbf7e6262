"""evaluate's predict_fn: each row's call runs inside a root span the evaluation starts, exported
through the caller's exporter (here spanlake's KafkaSpanExporter to the real broker) and ingested
like any production trace, with the app's own spans as its children."""

from __future__ import annotations

import json

import polars as pl
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from support import create_topic, ingest, read

from spanlake.ingest.exporter import KafkaSpanExporter
from spanlake.jobs.feedback import SCORER_ERROR
from spanlake.jobs.predict import predict
from spanlake.query import get_trace
from spanlake.settings import Settings


def test_each_call_is_a_trace_with_the_apps_spans_inside(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    exporter = KafkaSpanExporter(settings.bootstrap_servers, settings.topic)
    app_provider = TracerProvider()  # the app's own tracing, as it runs in production
    app_provider.add_span_processor(SimpleSpanProcessor(exporter))
    app_tracer = app_provider.get_tracer("app")

    def my_app(question: str) -> dict:
        with app_tracer.start_as_current_span("retrieve"):
            pass
        if "fail" in question:
            raise ValueError("no answer for that")
        return {"answer": question.upper()}

    rows = [{"inputs": {"question": "hello"}, "expectations": {"x": 1}}, {"inputs": {"question": "please fail"}}]
    out = predict(rows, my_app, run_id="run-1", exporter=exporter)
    assert [r["outputs"] for r in out] == [{"answer": "HELLO"}, None]
    assert out[0]["expectations"] == {"x": 1} and out[0]["error"] is None
    assert (
        out[1]["error"].error_code == SCORER_ERROR and "ValueError: no answer for that" in out[1]["error"].error_message
    )
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left open

    ingest(settings)
    traces = read(settings, "trace_info").sort("trace_id")
    assert sorted(traces["trace_id"]) == sorted(r["trace_id"] for r in out)
    by_id = {r["trace_id"]: r for r in traces.to_dicts()}
    ok, failed = (by_id[r["trace_id"]] for r in out)
    assert (ok["state"], failed["state"]) == ("OK", "ERROR")
    assert ok["root_span_name"] == "my_app" and dict(ok["tags"])["spanlake.evaluation.run_id"] == "run-1"
    spans = get_trace(out[0]["trace_id"], warehouse=settings.warehouse).spans
    assert [(s["name"], s["depth"]) for s in spans] == [("my_app", 0), ("retrieve", 1)]
    assert json.loads(spans[0]["inputs"]) == {"question": "hello"}
    assert json.loads(spans[0]["outputs"]) == {"answer": "HELLO"}
    assert read(settings, "span_data").filter(pl.col("name") == "retrieve").height == 2
