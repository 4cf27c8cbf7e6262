"""One trace in full: `get_trace` reads its trace_info row and every span, orders the spans
as a tree (depth-first from the roots, children by start time) and `Trace.tree()` prints it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from spanlake.errors import SpanlakeError
from spanlake.query.search import open_table, warehouse_location

__all__ = ["Trace", "TraceNotFoundError", "get_trace", "order_spans"]

class TraceNotFoundError(SpanlakeError, LookupError):
    """No trace_info row has the requested trace id."""


@dataclass(frozen=True)
class Trace:
    """A trace_info row (`info`) and its spans in tree order; each span dict carries `depth`
    (0 for roots and for orphans whose parent is missing) and `orphan`.
    """

    info: dict[str, Any]
    spans: list[dict[str, Any]]

    @property
    def trace_id(self) -> str:
        return str(self.info["trace_id"])

    def spans_frame(self) -> pl.DataFrame:
        """The spans as a DataFrame, in tree order."""
        return pl.DataFrame(self.spans)

    def to_dict(self) -> dict[str, Any]:
        return {"info": self.info, "spans": self.spans}

    def tree(self) -> str:
        """A printable tree: name, span type, duration, status and tokens per span."""
        info = self.info
        head = (
            f"trace {self.trace_id}  {info['state']}  {_time(info['request_time'])}  "
            f"{_ms(info['duration_ms'])}  {info['span_count']} spans{_tokens(info['total_tokens'])}"
        )
        return "\n".join([head, *(prefix + _label(span) for prefix, span in _tree_lines(self.spans))])


def _time(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="milliseconds") if value else "?"


def _ms(value: float | None) -> str:
    return "? ms" if value is None else f"{value:,.1f} ms"


def _tokens(value: int | None) -> str:
    return "" if value is None else f"  {value:,} tokens"


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
    """The trace with this id: its trace_info row and all its spans in tree order.

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
    return Trace(rows.row(0, named=True), order_spans(spans.to_dicts()))
