"""What monitor rules observe: per rule and scope, the metric's value over [now - window, now)
and the rows it was computed from (jobs.monitor_rules documents each metric).

Each source table is read once per evaluation, over the widest window of its rules, with its
day partitions pruned and only the columns the rules need; every rule then takes its own window,
filter and grouping from that frame in memory. (A trace filter with span. or feedback. clauses
needs span_data or assessments: such a rule reads through scan_traces on its own.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import polars as pl

from spanlake.errors import TableError
from spanlake.jobs.monitor_rules import MonitorRule
from spanlake.query import compile_filter, scan_assessments, scan_traces, value_as_number
from spanlake.query.location import MissingTableError, open_delta

OBSERVATION = {"rule": pl.String, "scope": pl.String, "observed": pl.Float64, "rows": pl.Int64}
ALL = "all"
NONE = "(none)"  # the scope of rows whose dimension is null
# The column each `by` dimension reads in each source.
_COLUMNS = {
    "trace_info": {"service": "service_name", "environment": "environment", "user_id": "user_id", "model": "model"},
    "cost_rollups": {"service": "service", "environment": "environment", "user_id": "user_id", "model": "model"},
}
_QUANTILES = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}


def observe(
    rules: Sequence[MonitorRule], now: dt.datetime, warehouse: str, storage_options: Mapping[str, str] | None
) -> tuple[pl.DataFrame, int]:
    """(one row per rule and scope: OBSERVATION's columns, rows read from the warehouse)."""
    options = dict(storage_options or {})
    out, read = [], 0
    for source, compute in _SOURCES.items():
        mine = [r for r in rules if r.source == source]
        if mine:
            frames, n = compute(mine, now, warehouse, options)
            out += frames
            read += n
    return pl.concat([pl.DataFrame(schema=OBSERVATION), *out], how="vertical_relaxed"), read


def _since(rules: Sequence[MonitorRule], now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(seconds=max(r.seconds for r in rules))


def _in_window(rule: MonitorRule, now: dt.datetime, col: str) -> pl.Expr:
    return (pl.col(col) >= pl.lit(now - dt.timedelta(seconds=rule.seconds))) & (pl.col(col) < pl.lit(now))


def _scoped(rule: MonitorRule, rows: pl.DataFrame, column: str | None, value: pl.Expr, count: pl.Expr) -> pl.DataFrame:
    """`value` and `count` per scope of `rows` (grouped by `column`); scope "all" always has a row."""
    if column is None:
        got = rows.select(observed=value, rows=count)
        scope = pl.lit(ALL)
    else:
        got = rows.group_by(column).agg(observed=value, rows=count)
        scope = pl.lit(f"{rule.by}=") + pl.col(column).cast(pl.String).fill_null(NONE)
    frame = got.select(rule=pl.lit(rule.name), scope=scope, observed=pl.col("observed").cast(pl.Float64),
                       rows=pl.col("rows").cast(pl.Int64))  # fmt: skip
    if column is None and rows.is_empty():
        frame = frame.with_columns(observed=pl.lit(None, pl.Float64))  # no data: nothing to compare
    return frame


def _single(rule: MonitorRule, observed: float | None, rows: int) -> pl.DataFrame:
    return pl.DataFrame({"rule": [rule.name], "scope": [ALL], "observed": [observed], "rows": [rows]}, schema=OBSERVATION)


def _open(name: str, warehouse: str, options: Mapping[str, str]) -> pl.LazyFrame | None:
    try:
        return open_delta(name, warehouse, options)[1]
    except MissingTableError:
        return None


def _days(lo: dt.datetime, now: dt.datetime) -> pl.Expr:
    return pl.col("day").is_between(pl.lit(lo.date()), pl.lit(now.date()))


# --- trace_info: error rate and latency ------------------------------------------------------


def _trace_metric(rule: MonitorRule) -> pl.Expr:
    if rule.metric == "error_rate":
        return (pl.col("state") == "ERROR").mean()
    return pl.col("duration_ms").quantile(_QUANTILES[rule.metric], interpolation="linear")


def _traces(
    rules: Sequence[MonitorRule], now: dt.datetime, warehouse: str, options: Mapping[str, str]
) -> tuple[list[pl.DataFrame], int]:
    compiled = {r.name: compile_filter(r.filter) for r in rules}
    own = {r.name for r in rules if compiled[r.name].span_predicates or compiled[r.name].assessment_predicates}
    shared = [r for r in rules if r.name not in own]
    columns = {"request_time", "state", "duration_ms"} | {_COLUMNS["trace_info"][r.by] for r in rules if r.by}
    for r in shared:
        predicate = compiled[r.name].predicate
        columns |= set(predicate.meta.root_names()) if predicate is not None else set()
    columns = (columns - {"model"}) | ({"models"} if "model" in columns else set())

    def load(filter_string: str | None, lo: dt.datetime) -> pl.DataFrame:
        rows = scan_traces(filter_string, start_time=lo, end_time=now, warehouse=warehouse, storage_options=options)
        return rows.filter(pl.col("state") != "IN_PROGRESS").select(sorted(columns)).collect()

    frames, read = [], 0
    base = load(None, _since(shared, now)) if shared else None
    read += 0 if base is None else base.height
    for rule in rules:
        if rule.name in own:
            rows = load(rule.filter, now - dt.timedelta(seconds=rule.seconds))
            read += rows.height
        else:
            assert base is not None
            predicate = compiled[rule.name].predicate
            rows = base.filter(_in_window(rule, now, "request_time"), *([predicate] if predicate is not None else []))
        if rule.by == "model":  # a trace counts once for each model it called (trace_info lists each once)
            rows = rows.select("state", "duration_ms", model="models").explode("model")
        column = _COLUMNS["trace_info"][rule.by] if rule.by else None
        frames.append(_scoped(rule, rows, column, _trace_metric(rule), pl.len()))
    return frames, read


# --- cost_rollups: application and judge spend -------------------------------------------------


def _costs(
    rules: Sequence[MonitorRule], now: dt.datetime, warehouse: str, options: Mapping[str, str]
) -> tuple[list[pl.DataFrame], int]:
    lo = _since(rules, now)
    scan = _open("cost_rollups", warehouse, options)
    if scan is None:
        raise TableError(f"monitors: no cost_rollups table in {warehouse}; run `spanlake jobs run costs` first")
    kinds = sorted({"judge" if r.metric == "judge_spend_usd" else "app" for r in rules})
    hours = scan.filter(
        _days(lo, now), pl.col("window") == "hour", pl.col("kind").is_in(kinds),
        pl.col("window_start") >= pl.lit(lo), pl.col("window_start") < pl.lit(now),
    ).select("kind", "window_start", "service", "environment", "user_id", "model", "cost_usd", "spans").collect()  # fmt: skip
    # The trace filter language's names for the dimensions a cost filter may use.
    named = hours.with_columns(service_name=pl.col("service"), models=pl.concat_list("model"))
    frames = []
    for rule in rules:
        kind = "judge" if rule.metric == "judge_spend_usd" else "app"
        rows = named.filter(pl.col("kind") == kind, _in_window(rule, now, "window_start"))
        predicate = compile_filter(rule.filter).predicate
        rows = rows.filter(predicate) if predicate is not None else rows
        column = _COLUMNS["cost_rollups"][rule.by] if rule.by else None
        frames.append(_scoped(rule, rows, column, pl.col("cost_usd").sum(), pl.col("spans").sum()))
    return frames, hours.height


# --- assessments: scorer pass rates ---------------------------------------------------------------


def _pass_rates(
    rules: Sequence[MonitorRule], now: dt.datetime, warehouse: str, options: Mapping[str, str]
) -> tuple[list[pl.DataFrame], int]:
    lo = _since(rules, now)
    names = sorted({r.scorer for r in rules if r.scorer})
    valued = (
        scan_assessments(warehouse=warehouse, storage_options=options, kind="feedback", created_since=lo)
        .filter(pl.col("name").is_in(names), pl.col("created_at") < pl.lit(now))
        .select("name", "created_at", value=value_as_number())
        .filter(pl.col("value").is_not_null())  # errors and unrated values are no verdict
        .collect()
    )
    frames = []
    for rule in rules:
        rows = valued.filter(pl.col("name") == rule.scorer, _in_window(rule, now, "created_at"))
        frames.append(_scoped(rule, rows, None, pl.col("value").mean(), pl.len()))
    return frames, valued.height


# --- ingest_batches: freshness and dead letters ---------------------------------------------------


def _batches(
    rules: Sequence[MonitorRule], now: dt.datetime, warehouse: str, options: Mapping[str, str]
) -> tuple[list[pl.DataFrame], int]:
    scan = _open("ingest_batches", warehouse, options)
    if scan is None:
        return [_single(r, None, 0) for r in rules], 0
    scan = scan.select("day", "committed_at", "messages", "dead_letters").filter(pl.col("committed_at") < pl.lit(now))
    lo = _since(rules, now)
    batches = scan.filter(_days(lo, now), pl.col("committed_at") >= pl.lit(lo)).collect()
    read = batches.height
    newest: dt.datetime | None = batches["committed_at"].max()  # type: ignore[assignment]
    if newest is None and any(r.metric == "ingest_freshness_seconds" for r in rules):
        newest = scan.select(pl.col("committed_at").max()).collect().item()  # stalled longer than any window
    frames = []
    for rule in rules:
        rows = batches.filter(_in_window(rule, now, "committed_at"))
        if rule.metric == "ingest_freshness_seconds":
            age = None if newest is None else (now - newest).total_seconds()
            frames.append(_single(rule, age, 0 if newest is None else 1))
        else:
            rate = pl.col("dead_letters").sum() / pl.col("messages").sum()
            frames.append(_scoped(rule, rows, None, pl.when(pl.col("messages").sum() > 0).then(rate), pl.len()))
    return frames, read


_SOURCES = {"trace_info": _traces, "cost_rollups": _costs, "assessments": _pass_rates, "ingest_batches": _batches}
