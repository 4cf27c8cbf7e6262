"""The query layer, the read layer that jobs and the dashboard import: the trace filter
language, `scan_traces` (the traces matching a filter and time range, as a LazyFrame), trace
search with stable paging, single trace retrieval (MLflow-shaped `Trace`), and `scan_assessments`
(scorer, judge and human results with overrides resolved). Names load on first use, so
`import spanlake.query` does not import Polars.

    from spanlake.query import scan_traces, search_traces, get_trace
    failed_tools = scan_traces("span.type = 'TOOL' AND span.status = 'ERROR'", start_time="2025-06-01")
    failed_tools.group_by("service_name").len().collect()
    page = search_traces("trace.status = 'ERROR' AND span.type = 'LLM'", max_results=50)
    page.frame, page.next_page_token
    print(get_trace(page["trace_id"][0]).tree())
    judged_no = scan_traces("feedback.correctness = 'no'")  # overrides resolved: a human "yes" wins
    scan_assessments(kind="feedback").group_by("name").agg(rate=value_as_number().mean()).collect()
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "scan_traces": "spanlake.query.search",
    "search_traces": "spanlake.query.search",
    "count_traces": "spanlake.query.search",
    "TracePage": "spanlake.query.search",
    "get_trace": "spanlake.query.traces",
    "Trace": "spanlake.query.traces",
    "TraceNotFoundError": "spanlake.query.traces",
    "Assessment": "spanlake.query.entities",
    "Span": "spanlake.query.entities",
    "SpanStatus": "spanlake.query.entities",
    "TraceData": "spanlake.query.entities",
    "TraceInfo": "spanlake.query.entities",
    "scan_assessments": "spanlake.query.assessments",
    "assessment_value": "spanlake.query.assessments",
    "value_as_number": "spanlake.query.assessments",
    "compile_filter": "spanlake.query.filters",
    "parse_filter": "spanlake.query.grammar",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
