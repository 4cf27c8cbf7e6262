"""spanlake: a warehouse for LLM-application traces.

OTLP spans from Kafka land exactly once in Delta tables (`trace_info`, `span_data`) that
Polars, DuckDB or Spark can read. The app's entry points (`instrument`, `trace`, `start_span`,
`autolog`) and the analyst's are re-exported here.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Loaded on first use (module __getattr__), so `import spanlake` does not import Polars.
_LAZY = {
    # the app side: OpenTelemetry set-up and span helpers (no warehouse dependencies)
    "instrument": "spanlake.tracing",
    "autolog": "spanlake.tracing",
    "trace": "spanlake.tracing",
    "start_span": "spanlake.tracing",
    "flush": "spanlake.tracing",
    # the analyst's side
    "search_traces": "spanlake.query.search",
    "count_traces": "spanlake.query.search",
    "get_trace": "spanlake.query.traces",
    "scorer": "spanlake.jobs.scorer",
    "Feedback": "spanlake.jobs.feedback",
    "Expectation": "spanlake.jobs.feedback",
    "AssessmentSource": "spanlake.jobs.feedback",
    "log_feedback": "spanlake.jobs.assessments",
    "log_expectation": "spanlake.jobs.assessments",
    "override_feedback": "spanlake.jobs.assessments",
    "evaluate": "spanlake.jobs",  # the package binds the function (its module has the same name)
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
