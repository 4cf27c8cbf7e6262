"""Cost: spend over time by model, provider and service; top users, sessions and traces; cost per
request; the token split; the prices in use and the models without one.

Totals and charts read cost_rollups (day rows when the chart is daily, else hour rows, so a
range's first partial day is not counted whole); sessions and traces read trace_costs joined to
trace_info; prices and unpriced models read span_costs. All of them are the cost job's tables.
"""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from spanlake.dashboard import data, global_filters, pages, units
from spanlake.dashboard.global_filters import Filters
from spanlake.tables.schemas import TOKEN_SPLIT

DIMENSIONS = {"Model": "model", "Provider": "provider", "Service": "service"}
TOKEN_LABELS = dict(zip((c.name for c in TOKEN_SPLIT),
                        ("uncached input", "cached input", "cache creation", "output", "reasoning")))  # fmt: skip
TOP = 10  # rows of the top lists, and series of a chart before the rest is "other"


def _app(cost_rollups: pl.LazyFrame, filters: Filters) -> pl.LazyFrame:
    return cost_rollups.filter(
        pl.col("window") == filters.rollup_window, pl.col("kind") == "app", filters.rollup_expr()
    )


@data.loader("cost_rollups")
def totals(cost_rollups: pl.LazyFrame, filters: Filters) -> dict[str, float | None]:
    """Cost, model calls, unpriced calls and the token split of the app's spend in the filters."""
    split = [pl.col(c).sum() for c in TOKEN_LABELS]
    row = (
        _app(cost_rollups, filters)
        .select(pl.col("cost_usd").sum(), pl.col("spans").sum(), pl.col("unpriced_spans").sum(), *split)
        .collect()
    )
    return row.row(0, named=True)


@data.loader("trace_info")
def requests(trace_info: pl.LazyFrame, filters: Filters) -> int:
    return int(trace_info.filter(filters.trace_expr()).select(pl.len()).collect().item())


@data.loader("cost_rollups")
def by_dimension(cost_rollups: pl.LazyFrame, filters: Filters, dimension: str) -> pl.DataFrame:
    """Cost per time bucket and value of `dimension`; beyond the TOP biggest values, "other"."""
    rows = (
        _app(cost_rollups, filters)
        .group_by(time=pl.col("window_start").dt.truncate(filters.granularity), value=pl.col(dimension))
        .agg(pl.col("cost_usd").sum())
        .collect()
    )
    top = rows.group_by("value").agg(pl.col("cost_usd").sum()).sort("cost_usd", descending=True).head(TOP)["value"]
    named = pl.when(pl.col("value").is_in(top.implode())).then(pl.col("value")).otherwise(pl.lit("other"))
    return (
        rows.with_columns(value=named.fill_null("unknown"))
        .group_by("time", "value")
        .agg(pl.col("cost_usd").sum())
        .sort("time", "value")
    )


@data.loader("cost_rollups")
def token_series(cost_rollups: pl.LazyFrame, filters: Filters) -> pl.DataFrame:
    """The token split per time bucket, long (time, part, tokens)."""
    wide = (
        _app(cost_rollups, filters)
        .group_by(time=pl.col("window_start").dt.truncate(filters.granularity))
        .agg(pl.col(c).sum() for c in TOKEN_LABELS)
        .collect()
    )
    return (
        wide.unpivot(list(TOKEN_LABELS), index="time", variable_name="part", value_name="tokens")
        .with_columns(pl.col("part").replace_strict(TOKEN_LABELS))
        .sort("time")
    )


@data.loader("cost_rollups")
def top_users(cost_rollups: pl.LazyFrame, filters: Filters) -> pl.DataFrame:
    return (
        _app(cost_rollups, filters)
        .filter(pl.col("user_id").is_not_null())
        .group_by("user_id")
        .agg(pl.col("cost_usd").sum(), model_calls=pl.col("spans").sum())
        .sort("cost_usd", descending=True, nulls_last=True)
        .head(TOP)
        .collect()
    )


@data.loader("trace_costs", "trace_info")
def trace_spend(trace_costs: pl.LazyFrame, trace_info: pl.LazyFrame, filters: Filters) -> dict[str, pl.DataFrame]:
    """The costliest traces and sessions: trace_costs joined to trace_info (session, user, filters)."""
    info = trace_info.filter(filters.trace_expr()).select(
        "trace_id", "day", "request_time", "session_id", "user_id", "service_name", "root_span_name"
    )
    # trace_costs shares trace_info's day partitions: the same range prunes both scans.
    costs = trace_costs.filter(filters.time_expr("request_time")).select("trace_id", "day", "cost_usd")
    joined = costs.join(info, on=["trace_id", "day"]).filter(pl.col("cost_usd").is_not_null())
    traces = joined.sort("cost_usd", descending=True).head(TOP)
    sessions = (
        joined.filter(pl.col("session_id").is_not_null())
        .group_by("session_id")
        .agg(pl.col("cost_usd").sum(), traces=pl.len(), user_id=pl.col("user_id").first())
        .sort("cost_usd", descending=True)
        .head(TOP)
    )
    found = pl.collect_all([traces, sessions])
    return {"traces": found[0].with_columns(link=pl.col("trace_id").map_elements(pages.trace_url, pl.String)),
            "sessions": found[1]}  # fmt: skip


@data.loader("span_costs")
def price_use(span_costs: pl.LazyFrame, filters: Filters) -> dict[str, pl.DataFrame]:
    """Which prices the spans were costed with, and the models left without a price."""
    rows = span_costs.filter(filters.rollup_expr("start_time"))
    sources = (
        rows.filter(pl.col("cost_usd").is_not_null())
        .group_by("price_source", "price_date", "cost_source")
        .agg(spans=pl.len())
        .sort("spans", descending=True)
    )
    unpriced = (
        rows.filter(pl.col("cost_usd").is_null())
        .group_by("provider", "model", "unpriced_reason")
        .agg(spans=pl.len())
        .sort("spans", descending=True)
    )
    found = pl.collect_all([sources, unpriced])
    return {"sources": found[0], "unpriced": found[1]}


def _headline(filters: Filters) -> None:
    now, before = totals(filters), totals(filters.previous) if filters.previous else {}
    count = requests(filters)
    per_request = now["cost_usd"] / count if count and now["cost_usd"] is not None else None
    previous_count = requests(filters.previous) if filters.previous else 0
    spent_before = before.get("cost_usd")
    previous = spent_before / previous_count if previous_count and spent_before is not None else None
    cells = st.columns(4)
    cells[0].metric("Total cost", units.usd(now["cost_usd"]), units.change(now["cost_usd"], before.get("cost_usd")),
                    delta_color="inverse")  # fmt: skip
    cells[1].metric("Cost per request", units.usd(per_request), units.change(per_request, previous),
                    delta_color="inverse", help="Total cost / requests (trace_info) in the filters.")  # fmt: skip
    cells[2].metric("Model calls", units.count(now["spans"]))
    cells[3].metric("Unpriced calls", units.count(now["unpriced_spans"]), help="Listed under Prices below.")


def _cost_chart(filters: Filters) -> None:
    label = st.segmented_control("Cost by", list(DIMENSIONS), default="Model", key="cost_by") or "Model"
    points = by_dimension(filters, DIMENSIONS[label])
    chart = (
        alt.Chart(points)
        .mark_bar()
        .encode(x=alt.X("time:T", title=None), y=alt.Y("cost_usd:Q", title="cost (USD)", stack=True),
                color=alt.Color("value:N", title=label.lower()),
                tooltip=["time:T", alt.Tooltip("value:N", title=label.lower()),
                         alt.Tooltip("cost_usd:Q", title="cost (USD)", format="$,.4f")])
        .interactive(bind_y=False)
    )  # fmt: skip
    st.altair_chart(chart, width="stretch")


def _tokens(filters: Filters, now: dict[str, float | None]) -> None:
    st.subheader("Tokens")
    cells = st.columns(len(TOKEN_LABELS))
    for cell, (column, label) in zip(cells, TOKEN_LABELS.items()):
        cell.metric(label.capitalize(), units.count(now[column]))
    chart = (
        alt.Chart(token_series(filters))
        .mark_area()
        .encode(x=alt.X("time:T", title=None), y=alt.Y("tokens:Q", stack=True), color=alt.Color("part:N", title=None),
                tooltip=["time:T", "part:N", alt.Tooltip("tokens:Q", format=",")])
        .interactive(bind_y=False)
    )  # fmt: skip
    st.altair_chart(chart, width="stretch")


def _top(filters: Filters) -> None:
    spend = trace_spend(filters)
    money = st.column_config.NumberColumn("cost", format="dollar")
    left, middle = st.columns(2)
    with left:
        st.subheader("Top users")
        st.dataframe(top_users(filters), hide_index=True, column_config={"cost_usd": money})
    with middle:
        st.subheader("Top sessions")
        st.dataframe(spend["sessions"], hide_index=True, column_config={"cost_usd": money})
    st.subheader("Top traces")
    st.dataframe(
        spend["traces"].select("link", "cost_usd", "request_time", "service_name", "root_span_name", "user_id",
                               "session_id"),
        hide_index=True,
        column_config={"link": st.column_config.LinkColumn("trace", display_text=r"trace_id=(\w+)"), "cost_usd": money},
    )  # fmt: skip


def _prices(filters: Filters) -> None:
    used = price_use(filters)
    st.subheader("Prices")
    st.caption("The price list each costed span was priced with, and when that price took effect (null: undated).")
    st.dataframe(used["sources"], hide_index=True)
    if used["unpriced"].is_empty():
        st.success("Every model call in the range has a price.", icon=":material/check:")
    else:
        st.warning("Model calls without a cost, and why. A model missing from the price list needs a price in "
                   "SPANLAKE_PRICES_FILE, then `spanlake jobs run costs --reprice --since DATE`.",
                   icon=":material/warning:")  # fmt: skip
        st.dataframe(used["unpriced"], hide_index=True)


st.title("Cost")
with data.page_errors():
    if data.no_traces_notice() or data.job_never_ran_notice("cost_rollups", "spanlake jobs run costs"):
        st.stop()
    filters = global_filters.current()
    _headline(filters)
    now = totals(filters)
    if not now["spans"]:
        st.info(f"No model calls in this time range ({filters.range}) with these filters: widen the time range in the "
                "sidebar, or run `spanlake jobs run costs` if traces arrived since the cost job last ran.")  # fmt: skip
        st.stop()
    _cost_chart(filters)
    _tokens(filters, now)
    _top(filters)
    _prices(filters)
