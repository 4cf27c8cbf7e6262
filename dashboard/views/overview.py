"""Overview: requests, errors, latency, tokens and cost over the range, each against the previous period."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from spanlake.dashboard import data, global_filters, units
from spanlake.dashboard.global_filters import Filters


@data.loader("trace_info")
def headline(trace_info: pl.LazyFrame, filters: Filters) -> dict[str, float | None]:
    """Requests, error rate, latency percentiles and tokens of the traces in the filters."""
    row = (
        trace_info.filter(filters.trace_expr())
        .select(
            requests=pl.len(),
            error_rate=(pl.col("state") == "ERROR").mean(),
            p50=pl.col("duration_ms").quantile(0.5),
            p95=pl.col("duration_ms").quantile(0.95),
            p99=pl.col("duration_ms").quantile(0.99),
            tokens=pl.col("total_tokens").sum(),
        )
        .collect()
    )
    return row.row(0, named=True)


@data.loader("trace_info")
def series(trace_info: pl.LazyFrame, filters: Filters) -> pl.DataFrame:
    """Requests and errors per time bucket (the granularity follows the range)."""
    return (
        trace_info.filter(filters.trace_expr())
        .group_by(time=pl.col("request_time").dt.truncate(filters.granularity))
        .agg(requests=pl.len(), errors=(pl.col("state") == "ERROR").sum())
        .sort("time")
        .collect()
    )


st.title("Overview")
with data.page_errors():
    if data.no_traces_notice():
        st.stop()
    filters = global_filters.current()
    now = headline(filters)
    before = headline(filters.previous) if filters.previous else {}
    cells = st.columns(6)
    for cell, (label, key, fmt) in zip(cells, (
        ("Requests", "requests", units.count), ("Error rate", "error_rate", units.percent),
        ("p50 latency", "p50", units.duration), ("p95 latency", "p95", units.duration),
        ("p99 latency", "p99", units.duration), ("Tokens", "tokens", units.count),
    )):  # fmt: skip
        cell.metric(label, fmt(now[key]), units.change(now[key], before.get(key)), delta_color="off")
    points = series(filters)
    if points.is_empty():
        st.info(f"No traces in the last {filters.range} with these filters: widen the time range in the sidebar.")
    else:
        long = points.unpivot(["requests", "errors"], index="time", variable_name="what", value_name="traces")
        chart = (
            alt.Chart(long)
            .mark_line(point=True)
            .encode(x=alt.X("time:T", title=None), y=alt.Y("traces:Q", title="traces"), color="what:N",
                    tooltip=["time:T", "what:N", alt.Tooltip("traces:Q", format=",")])
            .interactive(bind_y=False)
        )  # fmt: skip
        st.altair_chart(chart, use_container_width=True)
