"""evaluate's predict_fn: each row's call runs inside a root span the evaluation starts, exported
through the caller's exporter (here spanlake's KafkaSpanExporter to the real broker) and ingested
like any production trace, with the app's own spans as its children."""

from __future__ import annotations

import json

import polars as pl
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from support import create_topic, ingest, read

from spanlake.errors import ScoringError
from spanlake.exporter import KafkaSpanExporter
from spanlake.jobs import datasets, evaluate
from spanlake.jobs.feedback import SCORER_ERROR
from spanlake.jobs.predict import predict
from spanlake.jobs.scorer import scorer
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


def test_evaluate_with_predict_fn_scores_what_came_back_and_records_the_dataset_version(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    ds = datasets.create("qa", [
        {"inputs": {"question": "hello"}, "expectations": {"expected_response": "HELLO"}},
        {"inputs": {"question": "bye"}, "expectations": {"expected_response": "ciao"}},
    ], warehouse=settings.warehouse)  # fmt: skip
    ds = datasets.merge_records("qa", [{"inputs": {"question": "why"}, "expectations": {"expected_response": "WHY"}}],
                                warehouse=settings.warehouse)  # fmt: skip
    calls = []

    def my_app(question: str) -> str:
        calls.append(question)
        return question.upper()

    @scorer
    def exact_match(outputs, expectations) -> bool:
        return outputs == expectations["expected_response"]

    exporter = KafkaSpanExporter(settings.bootstrap_servers, settings.topic)
    result = evaluate(datasets.load("qa", version=1, warehouse=settings.warehouse), scorers=[exact_match],
                      predict_fn=my_app, exporter=exporter, warehouse=settings.warehouse)  # fmt: skip
    assert calls == ["hello", "bye", "why"] and result.dataset == ("qa", 1) == (ds.name, ds.version)
    assert result.result_df["exact_match/value"].to_list() == [True, False, True]
    assert result.metrics["exact_match/mean"] == pytest.approx(2 / 3)

    ingest(settings)  # the calls are traces like any other, and the results point at them
    assert sorted(read(settings, "trace_info")["trace_id"]) == sorted(result.result_df["trace_id"])
    stored = read(settings, "assessments").filter(pl.col("run_id") == result.run_id)
    assert sorted(stored["trace_id"]) == sorted(result.result_df["trace_id"])
    run = read(settings, "job_runs").filter(pl.col("run_id") == result.run_id).row(0, named=True)
    assert (run["job"], run["status"], run["rows_read"], run["rows_written"]) == ("evaluate", "OK", 3, 3)
    assert json.loads(run["watermark"]) == {"dataset": "qa", "dataset_version": 1}

    # Over stored traces there is nothing to call: predict_fn is refused, and the refusal recorded.
    with pytest.raises(ScoringError, match="calls the app on rows of inputs"):
        evaluate(result.result_df["trace_id"].to_list(), scorers=[exact_match], predict_fn=my_app,
                 warehouse=settings.warehouse)  # fmt: skip
    assert read(settings, "job_runs").filter(pl.col("status") == "ERROR").height == 1
