"""Overview: requests, errors, latency, tokens and cost over the range, each against the previous
period; the root spans that fail most, the slowest services and models, and the firing alerts."""

from __future__ import annotations

import datetime as dt

import altair as alt
import polars as pl
import streamlit as st

from spanlake.dashboard import data, global_filters, units
from spanlake.dashboard.global_filters import Filters

TOP = 10  # rows in the "top failing" and "slowest" lists
# cost_rollups holds hour and day windows of the same spend: read one kind only, never both.
# Day windows keep long ranges cheap; within 31 days hour windows follow the range's start closely.
HOUR_WINDOWS_UP_TO = dt.timedelta(days=31)


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


def cost_window(filters: Filters) -> str:
    """Which cost_rollups windows to read for the range: hour, or day for long ranges."""
    if filters.start is None or (filters.end or dt.datetime.now(dt.timezone.utc)) - filters.start > HOUR_WINDOWS_UP_TO:
        return "day"
    return "hour"


def _app_spend(cost_rollups: pl.LazyFrame, filters: Filters) -> pl.LazyFrame:
    return cost_rollups.filter(filters.rollup_expr(), pl.col("kind") == "app", pl.col("window") == cost_window(filters))


def _usd_sum() -> pl.Expr:
    """Sum of cost_usd, null when nothing is priced (unpriced is never a silent $0)."""
    return pl.when(pl.col("cost_usd").count() > 0).then(pl.col("cost_usd").sum())


@data.loader("cost_rollups")
def cost_total(cost_rollups: pl.LazyFrame, filters: Filters) -> float | None:
    """The application's model spend in the filters (judge spend is on the Cost page)."""
    value: float | None = _app_spend(cost_rollups, filters).select(_usd_sum()).collect().item()
    return value


@data.loader("trace_info")
def series(trace_info: pl.LazyFrame, filters: Filters) -> pl.DataFrame:
    """Per time bucket (the granularity follows the range): requests, errors, error rate,
    latency percentiles and tokens."""
    return (
        trace_info.filter(filters.trace_expr())
        .group_by(time=pl.col("request_time").dt.truncate(filters.granularity))
        .agg(
            requests=pl.len(),
            errors=(pl.col("state") == "ERROR").sum(),
            error_rate=(pl.col("state") == "ERROR").mean(),
            p50=pl.col("duration_ms").quantile(0.5),
            p95=pl.col("duration_ms").quantile(0.95),
            p99=pl.col("duration_ms").quantile(0.99),
            tokens=pl.col("total_tokens").sum(),
        )
        .sort("time")
        .collect()
    )


@data.loader("cost_rollups")
def cost_series(cost_rollups: pl.LazyFrame, filters: Filters) -> pl.DataFrame:
    """Spend per time bucket; rollup windows are hours at the finest, so buckets are too."""
    every = "1d" if cost_window(filters) == "day" else filters.granularity
    every = "1h" if every in ("1m", "15m") else every
    return (
        _app_spend(cost_rollups, filters)
        .group_by(time=pl.col("window_start").dt.truncate(every))
        .agg(cost=_usd_sum())
        .sort("time")
        .collect()
    )


@data.loader("trace_info")
def failing_roots(trace_info: pl.LazyFrame, filters: Filters) -> pl.DataFrame:
    """The root span names with the most failed traces, with their error rate."""
    return (
        trace_info.filter(filters.trace_expr())
        .group_by(pl.col("root_span_name").fill_null("(no root span yet)"))
        .agg(errors=(pl.col("state") == "ERROR").sum(), requests=pl.len())
        .filter(pl.col("errors") > 0)
        .with_columns(error_rate=pl.col("errors") / pl.col("requests"))
        .sort(["errors", "error_rate", "root_span_name"], descending=[True, True, False])
        .head(TOP)
        .collect()
    )


@data.loader("trace_info")
def slowest(trace_info: pl.LazyFrame, filters: Filters) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(services, models) by p95 trace latency; a model's figure is over the traces that called it."""
    traces = trace_info.filter(filters.trace_expr()).select("service_name", "models", "duration_ms")
    stats = {"requests": pl.len(), "p95_ms": pl.col("duration_ms").quantile(0.95)}
    services, models = pl.collect_all([
        traces.group_by(service=pl.col("service_name")).agg(**stats),
        traces.explode("models").drop_nulls("models").group_by(model=pl.col("models")).agg(**stats),
    ])  # fmt: skip

    def top(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.sort("p95_ms", "requests", descending=True, nulls_last=True).head(TOP)

    return top(services), top(models)


@data.loader("alerts")
def firing_alerts(alerts: pl.LazyFrame) -> pl.DataFrame:
    """The alerts firing now: the newest transition of each (rule, scope) when it is FIRING."""
    return (
        alerts.sort("since", "alert_id")
        .group_by("rule", "scope")
        .last()
        .filter(pl.col("state") == "FIRING")
        .select("rule", "scope", "metric", "observed", "comparison", "threshold", "window", "since")
        .sort("since", descending=True)
        .collect()
    )


FORMATS = {"count": ",.0f", "percent": ".2%", "ms": ",.0f", "usd": "$,.4f"}


def line_chart(points: pl.DataFrame, columns: list[str], title: str, unit: str) -> alt.Chart:
    """One line per column over time, with hover values and zoom on the time axis."""
    long = points.select("time", *columns).unpivot(columns, index="time", variable_name="series", value_name="value")
    axis = alt.Axis(format=FORMATS[unit]) if unit != "ms" else alt.Axis(title="ms")
    return (
        alt.Chart(long, title=title, height=220)
        .mark_line(point=True)
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("value:Q", title=None, axis=axis),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
            tooltip=["time:T", "series:N", alt.Tooltip("value:Q", format=FORMATS[unit])],
        )
        .interactive(bind_y=False)
    )


def metrics(filters: Filters) -> None:
    now = {**headline(filters), "cost": cost_total(filters)}
    before: dict[str, float | None] = {}
    if filters.previous:
        before = {**headline(filters.previous), "cost": cost_total(filters.previous)}
    cells = st.columns(7)
    for cell, (label, key, fmt) in zip(cells, (
        ("Requests", "requests", units.count), ("Error rate", "error_rate", units.percent),
        ("p50 latency", "p50", units.duration), ("p95 latency", "p95", units.duration),
        ("p99 latency", "p99", units.duration), ("Tokens", "tokens", units.count), ("Cost", "cost", units.usd),
    )):  # fmt: skip
        cell.metric(label, fmt(now[key]), units.change(now[key], before.get(key)), delta_color="off")


def charts(filters: Filters, points: pl.DataFrame) -> None:
    left, right = st.columns(2)
    left.altair_chart(line_chart(points, ["requests", "errors"], "Requests", "count"), width="stretch")
    right.altair_chart(line_chart(points, ["error_rate"], "Error rate", "percent"), width="stretch")
    left.altair_chart(line_chart(points, ["p50", "p95", "p99"], "Latency", "ms"), width="stretch")
    right.altair_chart(line_chart(points, ["tokens"], "Tokens", "count"), width="stretch")
    spend = cost_series(filters)
    if spend.is_empty():
        where = "`spanlake jobs run costs`" if data.missing("cost_rollups") else "the cost job's next run"
        left.caption(f"No priced model calls in this range yet: cost appears after {where}.")
    else:
        left.altair_chart(line_chart(spend, ["cost"], "Cost (model calls)", "usd"), width="stretch")


def failures_and_slowest(filters: Filters) -> None:
    left, right = st.columns(2)
    with left:
        st.subheader("Top failing root spans")
        roots = failing_roots(filters)
        if roots.is_empty():
            st.caption("No failed traces in this range.")
        else:
            st.dataframe(roots.select(
                root_span=pl.col("root_span_name"), errors="errors", requests="requests",
                error_rate=units.column("error_rate", units.percent),
            ), hide_index=True, width="stretch", key="overview_failing")  # fmt: skip
    with right:
        st.subheader("Slowest services and models (p95)")
        services, models = slowest(filters)
        for name, frame in (("service", services), ("model", models)):
            st.dataframe(frame.select(
                name, "requests", p95=units.column("p95_ms", units.duration),
            ), hide_index=True, width="stretch", key=f"overview_slowest_{name}")  # fmt: skip


def alerts() -> None:
    st.subheader("Firing alerts")
    if data.missing("alerts"):  # no monitors ran yet: not worth more than a line on this page
        st.caption("No monitors configured.")
        return
    firing = firing_alerts()
    if firing.is_empty():
        st.caption("Nothing is firing.")
        return
    st.dataframe(firing.with_columns(
        observed=pl.col("observed").round(4), fired_since=pl.col("since"),
    ).drop("since"), hide_index=True, width="stretch", key="overview_alerts")  # fmt: skip


st.title("Overview")
with data.page_errors():
    if data.no_traces_notice():
        st.stop()
    filters = global_filters.current()
    metrics(filters)
    points = series(filters)
    if points.is_empty():
        st.info(f"No traces in {filters.period} with these filters: widen the time range in the sidebar.")
        st.stop()
    charts(filters, points)
    failures_and_slowest(filters)
    alerts()
