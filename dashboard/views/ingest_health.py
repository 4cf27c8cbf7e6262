"""Ingest health: spans per second, freshness, consumer lag and offsets per partition, dead
letters, table sizes and last maintenance, job runs.

Throughput, lag and offsets come from ingest_batches (one row per committed micro-batch);
freshness is trace_info.ingested_at - end_time, the time from a trace's last span ending (about
when the exporter produced it) to the commit that made it visible. Only the time range of the
global filters applies, except to freshness, which is per trace and takes them all.
"""

from __future__ import annotations

import datetime as dt

import altair as alt
import polars as pl
import streamlit as st
from deltalake import DeltaTable

from spanlake.dashboard import data, global_filters, units
from spanlake.dashboard.global_filters import Filters
from spanlake.query.location import MISSING
from spanlake.tables import TABLES, table_uri
from spanlake.tables.maintenance import TableStatus, table_status

NEWEST = 200  # rows of the newest-first lists (dead letters, job runs)
BUCKET_SECONDS = {"1m": 60, "15m": 900, "1h": 3600, "1d": 86400}


@data.loader("ingest_batches")
def batches(ingest_batches: pl.LazyFrame, filters: Filters) -> dict[str, pl.DataFrame]:
    """Totals, spans per second per time bucket and per batch, and the newest offset per partition."""
    rows = ingest_batches.filter(filters.time_expr("committed_at"))
    totals = rows.select(
        batches=pl.len(), spans=pl.col("spans").sum(), messages=pl.col("messages").sum(), bytes=pl.col("bytes").sum(),
        dead_letters=pl.col("dead_letters").sum(), duplicate_spans=pl.col("duplicate_spans").sum(),
        newest=pl.col("committed_at").max(), lag=pl.col("consumer_lag").sort_by("committed_at").last(),
    )  # fmt: skip
    seconds = BUCKET_SECONDS[filters.granularity]
    series = (
        rows.group_by(time=pl.col("committed_at").dt.truncate(filters.granularity))
        .agg(spans_per_s=pl.col("spans").sum() / seconds, batches=pl.len())
        .sort("time")
    )
    per_batch = (
        rows.sort("committed_at", descending=True)
        .head(2000)  # enough points to see a trend, few enough to chart
        .select(
            "committed_at",
            "spans",
            "messages",
            "consumer_lag",
            "duration_ms",
            spans_per_s=pl.col("spans") / (pl.col("duration_ms") / 1000),
        )  # fmt: skip
    )
    partitions = (
        rows.select("group", "topic", "committed_at", "offsets")
        .explode("offsets")
        .unnest("offsets")
        .drop_nulls("partition")
        .group_by("group", "topic", "partition")
        .agg(pl.col("last_offset").max(), last_batch=pl.col("committed_at").max())
        .sort("group", "topic", "partition")
    )
    found = pl.collect_all([totals, series, per_batch, partitions])
    return dict(zip(("totals", "series", "per_batch", "partitions"), found))


@data.loader("trace_info")
def freshness(trace_info: pl.LazyFrame, filters: Filters) -> dict[str, float | None]:
    """Percentiles of produced-to-visible (ingested_at - end_time) over the filtered traces, in ms."""
    lag = (pl.col("ingested_at") - pl.col("end_time")).dt.total_microseconds() / 1000
    row = (
        trace_info.filter(filters.trace_expr(), pl.col("end_time").is_not_null())
        .select(lag.quantile(0.5).alias("p50"), lag.quantile(0.95).alias("p95"), lag.max().alias("max"))
        .collect()
    )
    return row.row(0, named=True)


@data.loader("ingest_errors")
def dead_letters(ingest_errors: pl.LazyFrame, filters: Filters) -> dict[str, pl.DataFrame]:
    """Dead letters in the range: grouped by reason, and the newest ones (never the raw bytes)."""
    rows = ingest_errors.filter(filters.time_expr("ingested_at"))
    reasons = (
        rows.group_by("stage", "error")
        .agg(messages=pl.len(), last_seen=pl.col("ingested_at").max())
        .sort("last_seen", descending=True)
    )
    newest = (
        rows.sort("ingested_at", descending=True)
        .head(NEWEST)
        .select("ingested_at", "stage", "error", "topic", "partition", "offset", "trace_id", "span_id")
    )
    found = pl.collect_all([reasons, newest])
    return {"reasons": found[0], "newest": found[1]}


@data.loader("job_runs")
def job_runs(runs: pl.LazyFrame, filters: Filters) -> pl.DataFrame:
    return (
        runs.filter(filters.time_expr("started_at"))
        .sort("started_at", descending=True)
        .head(NEWEST)
        .select(
            "job",
            "status",
            "started_at",
            duration_ms=(pl.col("ended_at") - pl.col("started_at")).dt.total_microseconds() / 1000,
            rows_read="rows_read",
            rows_written="rows_written",
            error="error",
        )  # fmt: skip
        .collect()
    )


@st.cache_data(show_spinner=False, max_entries=256)
def _status(name: str, version: int, warehouse: str, _options: dict[str, str]) -> TableStatus:
    # Cached per table version, like data.loader, but on the DeltaTable: sizes and history are in its log.
    return table_status(DeltaTable(table_uri(warehouse, name), version=version, storage_options=_options or None), name)


def table_statuses() -> pl.DataFrame:
    """Every existing table's version, files, size and last OPTIMIZE / VACUUM."""
    warehouse, options = data.location()
    rows = []
    for name in TABLES:
        version = data.version(name)
        if version == MISSING:
            continue
        s = _status(name, version, warehouse, options)
        rows.append({"table": name, "version": s.version, "files": s.files, "size": _size(s.bytes),
                     "bytes": s.bytes, "last_optimize": s.last_optimize, "last_vacuum": s.last_vacuum})  # fmt: skip
    return pl.DataFrame(rows)


def _size(n: int) -> str:
    for limit, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= limit:
            return f"{n / limit:.1f} {suffix}"
    return f"{n} B"


def _ago(when: dt.datetime | None) -> str:
    if when is None:
        return "–"
    return units.duration((dt.datetime.now(dt.timezone.utc) - when).total_seconds() * 1000) + " ago"


def _throughput(found: dict[str, pl.DataFrame], filters: Filters) -> None:
    totals = found["totals"].row(0, named=True)
    fresh = freshness(filters)
    cells = st.columns(6)
    cells[0].metric("Spans", units.count(totals["spans"]), help="Spans written to span_data by the batches in range.")
    cells[1].metric("Batches", units.count(totals["batches"]))
    cells[2].metric("Last commit", _ago(totals["newest"]))
    cells[3].metric("Consumer lag", units.count(totals["lag"]),
                    help="Messages behind the high watermarks after the newest batch, all partitions together "
                         "(ingest records lag per batch, not per partition).")  # fmt: skip
    cells[4].metric(
        "Freshness p50",
        units.duration(fresh["p50"]),
        help="trace_info.ingested_at - end_time: from a trace's last span ending to being visible.",
    )
    cells[5].metric("Freshness p95", units.duration(fresh["p95"]))
    left, right = st.columns(2)
    with left:
        st.caption(f"Spans per second, averaged per {filters.granularity}")
        chart = (
            alt.Chart(found["series"])
            .mark_area(line=True)
            .encode(x=alt.X("time:T", title=None), y=alt.Y("spans_per_s:Q", title="spans/s"),
                    tooltip=["time:T", alt.Tooltip("spans_per_s:Q", format=",.1f"), "batches:Q"])
            .interactive(bind_y=False)
        )  # fmt: skip
        st.altair_chart(chart, width="stretch")
    with right:
        st.caption("Per batch: spans / commit time (newest 2,000 batches)")
        chart = (
            alt.Chart(found["per_batch"])
            .mark_point()
            .encode(x=alt.X("committed_at:T", title=None), y=alt.Y("spans_per_s:Q", title="spans/s"),
                    tooltip=["committed_at:T", "spans:Q", "messages:Q", alt.Tooltip("duration_ms:Q", format=",.0f"),
                             alt.Tooltip("spans_per_s:Q", format=",.0f"), "consumer_lag:Q"])
            .interactive(bind_y=False)
        )  # fmt: skip
        st.altair_chart(chart, width="stretch")
    st.subheader("Partitions")
    st.caption("The newest offset committed per partition (from ingest_batches.offsets).")
    st.dataframe(found["partitions"], hide_index=True)


def _dead_letters(filters: Filters) -> None:
    st.subheader("Dead letters")
    found = dead_letters(filters)
    if found["newest"].is_empty():
        st.success(f"No dead letters in this time range ({filters.range}).", icon=":material/check:")
        return
    st.metric("Dead letters", units.count(found["reasons"].select(pl.col("messages").sum()).item()))
    st.dataframe(found["reasons"], hide_index=True, column_config={"error": st.column_config.TextColumn(width="large")})
    with st.expander(f"Newest {NEWEST}"):
        st.dataframe(found["newest"], hide_index=True)


def _tables() -> None:
    st.subheader("Tables")
    statuses = table_statuses()
    st.dataframe(statuses.drop("bytes"), hide_index=True)
    st.caption("Sizes are the current version's files; last maintenance is the newest OPTIMIZE and VACUUM commit "
               "among the last 1,000 commits (`spanlake maintain` runs them).")  # fmt: skip


def _jobs(filters: Filters) -> None:
    st.subheader("Job runs")
    if data.job_never_ran_notice("job_runs", "spanlake jobs run all"):
        return
    runs = job_runs(filters)
    if runs.is_empty():
        st.info(f"No job ran in this time range ({filters.range}).", icon=":material/schedule:")
        return
    st.dataframe(runs, hide_index=True,
                 column_config={"duration_ms": st.column_config.NumberColumn("duration (ms)", format="%.0f")})  # fmt: skip


st.title("Ingest health")
with data.page_errors():
    if data.no_traces_notice():
        st.stop()
    filters = global_filters.current()
    if data.missing("ingest_batches"):
        st.info("No ingest batch recorded yet: `spanlake ingest` writes one row per batch to ingest_batches.",
                icon=":material/inbox:")  # fmt: skip
    else:
        _throughput(batches(filters), filters)
    _dead_letters(filters)
    _tables()
    _jobs(filters)
