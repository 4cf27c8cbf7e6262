"""Calling the app for evaluate(predict_fn=...): each row's inputs go to `predict_fn` inside a root
span this evaluation starts (OpenTelemetry SDK), so the call is a trace like any production one,
and what came back is scored in the same run.

The spans go to `exporter` when given (spanlake's KafkaSpanExporter, say, passed in by the
caller: jobs never import ingest); spans the app makes with its own tracer become children of
that root, since OpenTelemetry's current span is shared by every tracer provider.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Status, StatusCode

from spanlake.jobs.feedback import SCORER_ERROR, AssessmentError

SERVICE_NAME = "spanlake-evaluate"
RUN_ID_ATTRIBUTE = "spanlake.evaluation.run_id"  # a root-span tag: `tags.`spanlake.evaluation.run_id` = '...'`


def predict(
    rows: Sequence[Mapping[str, Any]],
    predict_fn: Callable[..., Any],
    *,
    run_id: str,
    exporter: SpanExporter | None = None,
) -> list[dict[str, Any]]:
    """Each row with `outputs` (what `predict_fn` returned; None when it raised, with `error`
    holding why) and `trace_id` (the root span's trace). A dict of inputs is passed as keyword
    arguments, as MLflow does; anything else as the one argument."""
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    if exporter is not None:
        # Synchronous: a row's spans are sent before the next call; no thread to shut down, and
        # the caller's exporter stays open for its own use (shutdown would close it).
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("spanlake.jobs.predict")
    name = getattr(predict_fn, "__name__", None) or "predict"
    out = []
    try:
        for row in rows:
            inputs = row.get("inputs")
            attributes = {"mlflow.spanInputs": _json(inputs), "mlflow.spanType": '"CHAIN"', RUN_ID_ATTRIBUTE: run_id}
            with tracer.start_as_current_span(name, attributes=attributes, record_exception=False,
                                              set_status_on_exception=False) as span:  # fmt: skip
                error = None
                try:
                    outputs = predict_fn(**inputs) if isinstance(inputs, Mapping) else predict_fn(inputs)
                    span.set_attribute("mlflow.spanOutputs", _json(outputs))
                except Exception as exc:  # the row records the failure; the evaluation goes on
                    outputs, error = None, AssessmentError.of(exc, SCORER_ERROR)
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, error.error_message))
            out.append({**row, "outputs": outputs, "trace_id": f"{span.get_span_context().trace_id:032x}",
                        "error": error})  # fmt: skip
    finally:
        provider.force_flush()
    return out


def _json(value: Any) -> str:
    return json.dumps(value, default=str)
