"""One trace for Trace detail and the Review queue: the cached get_trace, its spans' and its own
cost (the cost job's tables, when they exist), and its spans as a frame in tree order."""

from __future__ import annotations

import datetime as dt
import re

import polars as pl
import streamlit as st

from spanlake.dashboard import data
from spanlake.query import Trace, TraceNotFoundError, get_trace

TRACE_ID = re.compile(r"[0-9a-f]{32}")
_ONE_DAY = dt.timedelta(days=1)


def clean_id(text: str | None) -> str | None:
    """A pasted trace id as stored (32 lower-case hex digits, W3C style), or None when it is not one."""
    value = (text or "").strip().lower().removeprefix("0x").replace("-", "")
    return value if TRACE_ID.fullmatch(value) else None


@data.query_loader("trace_info", "span_data", "assessments")
def load(trace_id: str) -> Trace | None:
    """The trace (its spans in tree order, assessments with overrides resolved), None when unknown."""
    warehouse, options = data.location()
    try:
        return get_trace(trace_id, warehouse=warehouse, storage_options=options)
    except TraceNotFoundError:
        return None


@data.loader("span_costs")
def span_costs(span_costs: pl.LazyFrame, trace_id: str, day: dt.date) -> pl.DataFrame:
    """span_id, cost_usd, cost_source, unpriced_reason of the trace's priced model calls (a span
    starts on its trace's day or later: the day prunes the read)."""
    return (
        span_costs.filter(pl.col("day") >= day, pl.col("day") <= day + _ONE_DAY, pl.col("trace_id") == trace_id)
        .select("span_id", "cost_usd", "cost_source", "unpriced_reason")
        .collect()
    )


@data.loader("trace_costs")
def trace_cost(trace_costs: pl.LazyFrame, trace_id: str, day: dt.date) -> float | None:
    """The trace's cost in USD (null when none of its calls is priced or the job has not run)."""
    row = trace_costs.filter(pl.col("day") == day, pl.col("trace_id") == trace_id).select("cost_usd").collect()
    return None if row.is_empty() else row.item()


def costs_of(trace: Trace) -> tuple[pl.DataFrame, float | None]:
    """(per-span costs, the trace's cost), empty / None while the cost job has not written them."""
    day = trace.info["day"]
    missing = data.missing("span_costs", "trace_costs")
    spans = _NO_COSTS if "span_costs" in missing else span_costs(trace.trace_id, day)
    total = None if "trace_costs" in missing else trace_cost(trace.trace_id, day)
    return spans, total


_NO_COSTS = pl.DataFrame(schema={"span_id": pl.String, "cost_usd": pl.Float64, "cost_source": pl.String,
                                 "unpriced_reason": pl.String})  # fmt: skip


def span_frame(trace: Trace, costs: pl.DataFrame) -> pl.DataFrame:
    """One row per span in tree order: position, depth, an indented label, times in ms from the
    trace's start, type, status, model, tokens and cost: the waterfall's and span list's data."""
    spans = trace.spans_frame()
    if spans.is_empty():
        return pl.DataFrame()
    start = spans["start_time"].min()
    indent = pl.lit("\u00a0\u00a0\u00a0").repeat_by(pl.col("depth")).list.join("")  # NBSP: axis labels keep them
    return (
        spans.with_row_index("position")
        .join(costs, on="span_id", how="left")
        .select(
            "position", "span_id", "depth", "name",
            label=pl.format("{} {}{}", (pl.col("position") + 1).cast(pl.String).str.pad_start(3), indent, pl.col("name")),
            start_ms=(pl.col("start_time") - start).dt.total_microseconds() / 1000,
            end_ms=(pl.col("end_time").fill_null(pl.col("start_time")) - start).dt.total_microseconds() / 1000,
            duration_ms="duration_ms", span_type=pl.col("span_type").fill_null("UNKNOWN"),
            status=pl.col("status_code").fill_null("UNSET"), model="model", input_tokens="input_tokens",
            output_tokens="output_tokens", total_tokens="total_tokens", cost_usd="cost_usd",
        )
        .sort("position")
    )  # fmt: skip


def span_list(spans: pl.DataFrame) -> None:
    """The span tree as a compact table: indented names, type, status, duration, tokens, cost."""
    st.dataframe(
        spans.select(span=pl.col("label").str.slice(4), type="span_type", status="status", ms="duration_ms",
                     tokens="total_tokens", cost_usd="cost_usd"),  # fmt: skip
        hide_index=True,
        column_config={"ms": st.column_config.NumberColumn("duration ms", format="%.1f"),
                       "cost_usd": st.column_config.NumberColumn("cost", format="$%.5f")},  # fmt: skip
    )
