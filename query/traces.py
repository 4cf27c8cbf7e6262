"""One trace in full: `get_trace` reads its trace_info row, every span and its assessments,
orders the spans as a tree (depth-first from the roots, children by start time) and
`Trace.tree()` prints it. `Trace` also offers what MLflow 3 scorers touch (`trace.info.<name>`,
`trace.data.spans`, `trace.search_spans`, `trace.search_assessments`): see spanlake.query.entities.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import polars as pl

from spanlake.errors import FilterError, SpanlakeError
from spanlake.query.assessments import ASSESSMENT_KINDS, trace_assessments
from spanlake.query.entities import Assessment, Span, TraceData, TraceInfo
from spanlake.query.location import open_table, warehouse_location

__all__ = ["Trace", "TraceNotFoundError", "get_trace", "order_spans"]


class TraceNotFoundError(SpanlakeError, LookupError):
    """No trace_info row has the requested trace id."""


@dataclass(frozen=True)
class Trace:
    """A trace_info row (`info`, a TraceInfo: a dict that also answers MLflow's attribute names),
    its spans in tree order (dicts; each carries `depth`, 0 for roots and for orphans whose
    parent is missing, and `orphan`) and its assessments (`Assessment` rows, oldest first, each
    with `valid` false when another one overrides it). Plain dicts are accepted for all three.
    """

    info: dict[str, Any]
    spans: list[dict[str, Any]]
    assessments: list[Assessment] = field(default_factory=list)

    def __post_init__(self) -> None:
        assessments = [a if isinstance(a, Assessment) else Assessment.of(a) for a in self.assessments]
        object.__setattr__(self, "assessments", assessments)
        object.__setattr__(self, "info", TraceInfo(self.info, assessments))

    @property
    def trace_id(self) -> str:
        return str(self.info["trace_id"])

    @cached_property
    def data(self) -> TraceData:
        """MLflow's `trace.data`: `.spans` as Span objects (tree order), `.request`, `.response`."""
        return TraceData([Span(s) for s in self.spans], self.info.get("root_span_id"))

    def search_spans(
        self, span_type: str | None = None, name: str | re.Pattern[str] | None = None, span_id: str | None = None
    ) -> list[Span]:
        """Spans of this type, name (a string matches exactly, a compiled regex anywhere, as in
        MLflow) and id; None matches any."""
        if name is not None and not isinstance(name, (str, re.Pattern)):
            raise FilterError(f"search_spans: name must be a string or a compiled regex, not {type(name).__name__}")
        if span_type is not None and not isinstance(span_type, str):
            raise FilterError(f"search_spans: span_type must be a string, not {type(span_type).__name__}")

        def named(span: Span) -> bool:
            return name is None or (span.name == name if isinstance(name, str) else name.search(span.name) is not None)

        return [
            s
            for s in self.data.spans
            if (span_type is None or s.span_type == span_type) and (span_id is None or s.span_id == span_id) and named(s)
        ]

    def search_assessments(
        self, name: str | None = None, *, span_id: str | None = None, all: bool = False, type: str | None = None
    ) -> list[Assessment]:
        """MLflow's `search_assessments`: valid assessments (`all=True`: overridden ones too) of
        this name, span and type ("feedback" or "expectation"); None matches any."""
        if type is not None and type not in ASSESSMENT_KINDS:
            raise FilterError(f"search_assessments: type must be one of {', '.join(ASSESSMENT_KINDS)}, not {type!r}")
        return [
            a
            for a in self.assessments
            if (all or a["valid"])
            and (name is None or a["name"] == name)
            and (span_id is None or a["span_id"] == span_id)
            and (type is None or a["kind"] == type)
        ]

    def spans_frame(self) -> pl.DataFrame:
        """The spans as a DataFrame, in tree order."""
        return pl.DataFrame(self.spans)

    def to_dict(self) -> dict[str, Any]:
        return {"info": dict(self.info), "spans": self.spans, "assessments": [dict(a) for a in self.assessments]}

    def tree(self) -> str:
        """A printable tree: name, span type, duration, status and tokens per span, then the
        assessments, one per line."""
        info = self.info
        head = (
            f"trace {self.trace_id}  {info['state']}  {_time(info['request_time'])}  "
            f"{_ms(info['duration_ms'])}  {info['span_count']} spans{_tokens(info['total_tokens'])}"
        )
        lines = [head, *(prefix + _label(span) for prefix, span in _tree_lines(self.spans))]
        if self.assessments:
            lines += ["assessments:", *("  " + _assessment_line(a) for a in self.assessments)]
        return "\n".join(lines)


def _time(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="milliseconds") if value else "?"


def _ms(value: float | None) -> str:
    return "? ms" if value is None else f"{value:,.1f} ms"


def _tokens(value: int | None) -> str:
    return "" if value is None else f"  {value:,} tokens"


def _assessment_line(a: Assessment) -> str:
    what = f"{a['kind']} {a['name']}" + (f" (span {a['span_id']})" if a["span_id"] else "")
    if a["error_code"]:
        result = f": {a['error_code']} {a['error_message'] or ''}".rstrip()
    else:
        result = " = " + _short(json.dumps(a["value"], ensure_ascii=False))
    source = f"  [{a['source_type']}{' ' + a['source_id'] if a['source_id'] else ''}]"
    why = f"  {_short(a['rationale'])!r}" if a["rationale"] else ""
    replaces = f"  overrides {a['overrides']}" if a["overrides"] else ""
    return f"{what}{result}{source}{why}{replaces}" + ("" if a["valid"] else "  (overridden)")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _label(span: Mapping[str, Any]) -> str:
    orphan = f"  (orphan: parent {span['parent_span_id']} not found)" if span.get("orphan") else ""
    return (
        f"{span['name']} [{span['span_type'] or '?'}] {_ms(span['duration_ms'])} "
        f"{span['status_code'] or '?'}{_tokens(span['total_tokens'])}{orphan}"
    )


def _tree_lines(spans: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(prefix, span) per line: a span is a last child when no later sibling follows it."""
    for i, span in enumerate(spans):
        depth = span["depth"]
        if depth == 0:
            yield "", span
            continue
        parts = []
        for level in range(1, depth + 1):
            more = _has_later_sibling(spans, i, level)
            if level < depth:
                parts.append("│  " if more else "   ")
            else:
                parts.append("├─ " if more else "└─ ")
        yield "".join(parts), span


def _has_later_sibling(spans: list[dict[str, Any]], i: int, level: int) -> bool:
    # The ancestor of spans[i] at `level` (or spans[i] itself) has a later sibling when a later
    # span sits at that level before the walk climbs above it.
    for later in spans[i + 1 :]:
        if later["depth"] < level:
            return False
        if later["depth"] == level:
            return True
    return False


def order_spans(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans depth-first from the roots, children by start time; then orphans (parent missing)
    at the top level; spans caught in a parent cycle last, so no span is ever dropped.
    """
    ordered_in_time = sorted(spans, key=lambda s: (s["start_time"], s["span_id"]))
    ids = {s["span_id"] for s in spans}
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    tops: list[dict[str, Any]] = []
    orphans: list[dict[str, Any]] = []
    for span in ordered_in_time:
        parent = span["parent_span_id"]
        if parent is None:
            tops.append(span)
        elif parent in ids and parent != span["span_id"]:
            children[parent].append(span)
        else:
            orphans.append(span)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for top in [*tops, *orphans, *ordered_in_time]:  # the last pass only finds cycle members
        if top["span_id"] in seen:
            continue
        stack = [(top, 0)]  # iterative: deep traces must not hit the recursion limit
        while stack:
            span, depth = stack.pop()
            if span["span_id"] in seen:
                continue
            seen.add(span["span_id"])
            out.append({**span, "depth": depth, "orphan": depth == 0 and span["parent_span_id"] is not None})
            stack.extend((child, depth + 1) for child in reversed(children[span["span_id"]]))
    return out


def get_trace(
    trace_id: str, *, warehouse: str | None = None, storage_options: Mapping[str, str] | None = None
) -> Trace:
    """The trace with this id: its trace_info row, all its spans in tree order and its
    assessments (none while the assessments table does not exist).

    Spans first: span_data is kept sorted by trace_id within each day, so file and row-group
    statistics on trace_id narrow the lookup to about one row group per day, with no day to
    know beforehand. The earliest span start is the trace's request_time (ingest's rule), which
    pins its trace_info row to one day and, trace_info being sorted by request_time, to one
    row group. Should that miss (spans expired, a row moved by a late root), the trace_info
    lookup falls back to the candidate days, then to the whole table.
    """
    warehouse, options = warehouse_location(warehouse, storage_options)
    _, traces = open_table("trace_info", warehouse, options)
    _, span_scan = open_table("span_data", warehouse, options)
    same_id = pl.col("trace_id") == pl.lit(trace_id, dtype=pl.String)
    spans = span_scan.filter(same_id).collect()
    if spans.is_empty():
        rows = traces.filter(same_id).collect()
    else:
        first: dt.datetime = spans["start_time"].min()  # type: ignore[assignment]
        rows = traces.filter(pl.col("day") == first.date(), pl.col("request_time") == first, same_id).collect()
        if rows.is_empty():  # request_time is the earliest start: the row is on that day or before
            rows = traces.filter(pl.col("day") <= first.date(), same_id).collect()
    if rows.is_empty():
        raise TraceNotFoundError(f"no trace with id {trace_id!r} in {warehouse}")
    info = rows.row(0, named=True)
    assessments = trace_assessments(trace_id, info["day"], warehouse, options)
    return Trace(info, order_spans(spans.to_dicts()), [Assessment.of(a) for a in assessments.to_dicts()])
