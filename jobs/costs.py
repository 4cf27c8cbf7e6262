"""The cost job (`spanlake jobs run costs`): span_costs, trace_costs and cost_rollups, kept equal to a
from-scratch computation over span_data, trace_info and assessments, recomputing only what changed.

The unit of work is the UTC hour of a span's start. A run
1. reads each cost table's watermark: per source table, the Delta version it covers (txn
   `spanlake-job:costs:<source>`), and starts from the lowest (a crash between the three commits
   leaves one behind; redoing it on the others is a no-op);
2. finds the hours touched since: those of the model-call spans in the span_data files the
   covered version lacks (tables.delta.files_added_since; Delta versions, not ingested_at, which
   two ingest processes can commit out of order), and every hour of each trace in the trace_info
   files it lacks ([request_time, end_time] +- SKEW): a trace's row changes with every batch of its
   spans, so a span that changes which of its trace's spans count (tables.tokens) or the trace's
   user and environment (its root) touches all the trace's hours. Judge spend: the hours of the
   assessments files it lacks. `reprice_since` adds every hour from that date;
3. recomputes those hours entirely (every counted model-call span starting in them, priced by
   jobs.prices) and replaces them in span_costs (a predicate overwrite), the trace_costs rows of
   the traces of step 2's trace_info files (a MERGE, which also drops rows that moved day or lost
   their last counted span), and the hour windows plus their days in cost_rollups;
4. writes each table's rows and its new watermark (the source versions it read) in one commit. A
   concurrent run committing the same txn app ids makes delta-rs refuse the later commit; the run
   then starts over from the new watermarks. No new version of any source: nothing is written.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

from spanlake.errors import TableError
from spanlake.jobs.job_runs import JobRun, one_line
from spanlake.jobs.prices import PriceList, price_spans
from spanlake.query.search import span_days
from spanlake.tables.delta import (
    NO_CHECKPOINT,
    check_warehouse,
    files_added_since,
    is_commit_conflict,
    open_or_create,
    partition_days,
    table_uri,
    writer_properties,
)
from spanlake.tables.schemas import COST_ROLLUPS, SPAN_COSTS, TOKEN_SPLIT, TRACE_COSTS, TableSpec
from spanlake.tables.tokens import counts_tokens, is_model_call, reports_usage

JOB = "costs"
SOURCES = ("span_data", "trace_info", "assessments")
TARGETS = (SPAN_COSTS, TRACE_COSTS, COST_ROLLUPS)
SKEW = dt.timedelta(minutes=5)  # a span starts within its trace's [request_time, end_time], give or take (as ingest)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
END = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)  # "from a date on", as an interval
MAX_INTERVALS = 64  # past this, the smallest gaps between touched hours are recomputed too
RETRIES = 8
FILE_HOURS = 2  # a rebuild writes span_costs and cost_rollups files of this many hours
SPLIT = [c.name for c in TOKEN_SPLIT]
DIMENSIONS = ["service", "environment", "provider", "model", "user_id"]

Interval = tuple[dt.datetime, dt.datetime]  # [start, end) on hour boundaries


def app_id(source: str) -> str:
    return f"spanlake-job:{JOB}:{source}"


@dataclass
class CostRun:
    """What one run did."""

    spans_read: int = 0  # model-call spans and judge results read
    rows_written: int = 0  # rows written over the three tables
    windows_recomputed: int = 0  # cost_rollups windows (hours and days) rewritten
    watermark: dict[str, int | None] = field(default_factory=dict)  # source table -> Delta version covered


def run_costs(
    *,
    warehouse: str,
    storage_options: Mapping[str, str] | None = None,
    reprice_since: dt.date | None = None,
    prices: PriceList | None = None,
) -> CostRun:
    """Bring the cost tables up to date (and re-price from `reprice_since` on, with `prices`);
    its job_runs row records the run, with the error if it failed."""
    run = JobRun(JOB)
    try:
        check_warehouse(warehouse)
        prices = prices or PriceList()
        for attempt in range(RETRIES):
            try:
                result = _run_once(warehouse, storage_options, reprice_since, prices)
                break
            except Exception as exc:
                if not is_commit_conflict(exc) or attempt == RETRIES - 1:
                    raise
                time.sleep(0.05 * 2**attempt)  # another run committed first: start over from its watermarks
        run.rows_read, run.rows_written = result.spans_read, result.rows_written
        run.watermark = {**result.watermark, **({"reprice_since": str(reprice_since)} if reprice_since else {})}
    except Exception as exc:
        run.record(warehouse=warehouse, storage_options=storage_options, error=one_line(exc))
        raise
    run.record(warehouse=warehouse, storage_options=storage_options)
    return result


# --- intervals of hours ---------------------------------------------------------------------


def _floor_hour(t: dt.datetime) -> dt.datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _intervals(hours: list[dt.datetime], extra: list[Interval] = ()) -> list[Interval]:  # type: ignore[assignment]
    """Touched hours (and whole intervals) as at most MAX_INTERVALS disjoint intervals."""
    merged: list[list[dt.datetime]] = []
    for lo, hi in sorted([(h, h + HOUR) for h in hours] + list(extra)):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    while len(merged) > MAX_INTERVALS:
        i = min(range(1, len(merged)), key=lambda i: merged[i][0] - merged[i - 1][1])
        merged[i - 1][1] = merged.pop(i)[1]
    return [(lo, hi) for lo, hi in merged]


def _days(intervals: list[Interval]) -> list[Interval]:
    """The whole days the intervals touch."""

    def ceil(t: dt.datetime) -> dt.datetime:
        day = t.replace(hour=0, minute=0, second=0, microsecond=0)
        return day if day == t else day + DAY

    return _intervals([], [(lo.replace(hour=0), ceil(hi)) for lo, hi in intervals])


def _within(intervals: list[Interval], col: str) -> pl.Expr:
    """Rows of `col` in the intervals, with the day partitions named for pruning."""
    out = pl.lit(False)
    for lo, hi in intervals:
        out = out | (
            pl.col("day").is_between(pl.lit(lo.date()), pl.lit((hi - dt.timedelta(microseconds=1)).date()))
            & (pl.col(col) >= pl.lit(lo)) & (pl.col(col) < pl.lit(hi))
        )  # fmt: skip
    return out


def _sql_time(t: dt.datetime) -> str:
    return f"'{t.astimezone(dt.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'"


def _sql_within(intervals: list[Interval], col: str) -> str:
    return " OR ".join(
        f"(day >= '{lo.date()}' AND day <= '{(hi - dt.timedelta(microseconds=1)).date()}' "
        f"AND {col} >= {_sql_time(lo)} AND {col} < {_sql_time(hi)})"
        for lo, hi in intervals
    )


def _hours_of(times: pl.Series) -> list[dt.datetime]:
    return times.drop_nulls().dt.truncate("1h").unique().to_list()


# --- one run ----------------------------------------------------------------------------------


@dataclass
class _Plan:
    app: list[Interval]  # hours whose span_costs and app rollups are recomputed
    judge: list[Interval]  # hours whose judge rollups are recomputed
    traces: pl.DataFrame | None  # trace_ids (and request_time) whose trace_costs rows are redone; None: all


def _open(warehouse: str, name: str, options: dict[str, str] | None) -> DeltaTable | None:
    try:
        return DeltaTable(table_uri(warehouse, name), storage_options=options)
    except TableNotFoundError:
        return None


def _run_once(
    warehouse: str, storage_options: Mapping[str, str] | None, reprice_since: dt.date | None, prices: PriceList
) -> CostRun:
    options = dict(storage_options or {}) or None
    targets = {s.name: open_or_create(table_uri(warehouse, s.name), s, storage_options) for s in TARGETS}
    # trace_info before span_data: span_data commits a batch first, so it holds what trace_info does
    sources = {name: _open(warehouse, name, options) for name in ("trace_info", "span_data", "assessments")}
    if sources["span_data"] is None or sources["trace_info"] is None:
        raise TableError(f"costs: no span_data or trace_info in warehouse {warehouse} (run `spanlake ingest` first)")
    latest = {name: (t.version() if t is not None else None) for name, t in sources.items()}
    behind = {n: t for n, t in targets.items() if any(t.transaction_version(app_id(s)) != latest[s] for s in SOURCES)}
    result = CostRun(watermark={s: latest[s] for s in SOURCES})
    if not behind and reprice_since is None:
        return result  # nothing new anywhere: no commit, no version moves
    covered = {s: _lowest([t.transaction_version(app_id(s)) for t in targets.values()]) for s in SOURCES}
    txns = [Transaction(app_id(s), v) for s, v in latest.items() if v is not None]
    commit = CommitProperties(app_transactions=txns)
    plan = _plan(sources, covered, storage_options) if behind else None
    if plan is not None and plan.traces is None:  # first run, or the covered versions' log is gone: every day
        _rebuild(targets, sources, None, prices, commit, result)
        return result
    if plan is not None:
        _update(behind, sources, plan, prices, commit, result)
    if reprice_since is not None:  # caught up: now every day from the first trace still running then
        _rebuild(targets, sources, _reprice_start(sources["trace_info"], reprice_since), prices, commit, result)
    return result


def _update(
    behind: dict[str, DeltaTable], sources: dict[str, DeltaTable | None], plan: _Plan, prices: PriceList,
    commit: CommitProperties, result: CostRun,
) -> None:  # fmt: skip
    """Recompute the plan's hours and traces, one commit per table."""
    assert sources["span_data"] is not None and sources["trace_info"] is not None
    rows = _span_costs(sources["span_data"], sources["trace_info"], plan.app, prices)
    judged = _judge_rows(sources["assessments"], plan.judge, prices)
    result.spans_read += rows.height + judged.height
    if SPAN_COSTS.name in behind:
        result.rows_written += _replace(behind[SPAN_COSTS.name], SPAN_COSTS, rows.select(SPAN_COSTS.column_names),
                                        _sql_within(plan.app, "start_time"), commit)  # fmt: skip
    if TRACE_COSTS.name in behind:
        result.rows_written += _write_trace_costs(behind[TRACE_COSTS.name], rows, plan, sources["trace_info"], commit)
    if COST_ROLLUPS.name in behind:
        written, windows = _write_rollups(behind[COST_ROLLUPS.name], rows, judged, plan, commit)
        result.rows_written += written
        result.windows_recomputed += windows


def _lowest(versions: list[int | None]) -> int | None:
    return None if any(v is None for v in versions) else min(v for v in versions if v is not None)


def _plan(
    sources: dict[str, DeltaTable | None], covered: dict[str, int | None], storage_options: Mapping[str, str] | None
) -> _Plan:
    spans, info, judged = sources["span_data"], sources["trace_info"], sources["assessments"]
    assert spans is not None and info is not None
    span_files = _added(spans, covered["span_data"], storage_options)
    info_files = _added(info, covered["trace_info"], storage_options)
    if span_files is None or info_files is None:  # first run (or the log moved on): everything
        app, traces = [(EPOCH, END)], None
    else:
        new_spans = _read(span_files, {"span_type": pl.String, "start_time": TIME}, storage_options).filter(
            is_model_call()
        )
        traces = _read(info_files, {"trace_id": pl.String, "request_time": TIME, "end_time": TIME}, storage_options)
        ranges = traces.select(
            lo=(pl.col("request_time") - SKEW).dt.truncate("1h"),
            hi=pl.coalesce("end_time", "request_time") + SKEW,
        )
        app = _intervals(_hours_of(new_spans["start_time"]), list(ranges.iter_rows()))
        traces = traces.select("trace_id", "request_time").unique("trace_id")
    judge: list[Interval] = []
    if judged is not None:
        judge_files = _added(judged, covered["assessments"], storage_options)
        if judge_files is None:
            judge = [(EPOCH, END)]
        else:
            made = _read(judge_files, {"created_at": TIME, "judge_model": pl.String}, storage_options).drop_nulls(
                "judge_model"
            )
            judge = _intervals(_hours_of(made["created_at"]))
    return _Plan(app, judge, traces)


def _added(table: DeltaTable, version: int | None, storage_options: Mapping[str, str] | None) -> list[str] | None:
    return None if version is None else files_added_since(table, version, storage_options)


TIME = pl.Datetime("us", "UTC")


def _read(files: list[str], columns: dict[str, Any], storage_options: Mapping[str, str] | None) -> pl.DataFrame:
    if not files:
        return pl.DataFrame(schema=columns)
    return pl.scan_parquet(files, hive_partitioning=False, storage_options=dict(storage_options or {}) or None)\
        .select(list(columns)).collect()  # fmt: skip


# --- span_costs -------------------------------------------------------------------------------

SPAN_READ = ["trace_id", "span_id", "parent_span_id", "span_type", "start_time", "end_time", "service_name",
             "provider", "model", "input_tokens", "output_tokens", "cache_read_input_tokens",
             "cache_creation_input_tokens", "reasoning_output_tokens", "provided_cost_usd"]  # fmt: skip


def _span_costs(spans: DeltaTable, info: DeltaTable, intervals: list[Interval], prices: PriceList) -> pl.DataFrame:
    """span_costs rows (plus span_type, input/output tokens) of every counted model-call span
    starting in the intervals."""
    if not intervals:
        return _empty_span_costs()
    scan = pl.scan_delta(spans).filter(is_model_call())
    calls = scan.filter(_within(intervals, "start_time")).select(SPAN_READ).collect()
    # A call's inner calls start within it, possibly past its interval: read them too, for the rule.
    reach = []
    for lo, hi in intervals:
        end = calls.filter((pl.col("start_time") >= lo) & (pl.col("start_time") < hi))["end_time"].max()
        if isinstance(end, dt.datetime) and end > hi:
            reach.append((hi, end + SKEW))
    inner = pl.DataFrame(schema=calls.schema)
    if reach:
        inner = scan.filter(
            _within(reach, "start_time") & ~_within(intervals, "start_time") & reports_usage()
            & pl.col("parent_span_id").is_in(calls["span_id"].implode())
        ).select(SPAN_READ).collect()  # fmt: skip
    both = pl.concat([calls, inner])
    counted = calls.filter(counts_tokens(both).head(calls.height))
    if counted.is_empty():
        return _empty_span_costs()
    first, last = counted["start_time"].min(), counted["start_time"].max()
    assert isinstance(first, dt.datetime) and isinstance(last, dt.datetime)
    # The trace's user, environment and request_time (trace_costs' day), from its trace_info row.
    bounds = (pl.col("day") <= (last + SKEW).date()) & (pl.col("request_time") <= last + SKEW)
    attrs = (
        pl.scan_delta(info)
        .filter(bounds & (pl.col("end_time").is_null() | (pl.col("end_time") >= first - SKEW)))
        .select("trace_id", "user_id", "environment", "request_time")
        .join(counted.lazy().select("trace_id").unique(), on="trace_id", how="semi")
        .unique("trace_id")
        .collect()
    )  # fmt: skip
    if (missing := counted.select("trace_id").unique().join(attrs, on="trace_id", how="anti")).height:
        # trace_info's row ends before the span starts (its latest batch is not committed yet)
        late = (
            pl.scan_delta(info).filter(bounds).select("trace_id", "request_time")
            .join(missing.lazy(), on="trace_id", how="semi").unique("trace_id").collect()
        )  # fmt: skip
        attrs = pl.concat([attrs, late], how="diagonal")
    priced = price_spans(counted.join(attrs, on="trace_id", how="left"), prices)
    return priced.select(
        "trace_id", "span_id", "start_time", pl.col("service_name").alias("service"), "environment",
        "provider", "model", "user_id", *_split(), "cost_usd", "cost_source", "price_source", "price_date",
        "unpriced_reason", pl.col("start_time").dt.date().alias("day"), "span_type", "input_tokens", "output_tokens",
        "request_time",
    )  # fmt: skip


def _split() -> list[pl.Expr]:
    """Inclusive counts into the five disjoint parts (TOKEN_SPLIT); an unreported count is 0."""

    def n(c: str) -> pl.Expr:
        return pl.col(c).fill_null(0)

    return [
        (n("input_tokens") - n("cache_read_input_tokens") - n("cache_creation_input_tokens")).alias(SPLIT[0]),
        n("cache_read_input_tokens").alias(SPLIT[1]),
        n("cache_creation_input_tokens").alias(SPLIT[2]),
        (n("output_tokens") - n("reasoning_output_tokens")).alias(SPLIT[3]),
        n("reasoning_output_tokens").alias(SPLIT[4]),
    ]


def _empty_span_costs() -> pl.DataFrame:
    extra = pl.DataFrame(
        schema={"span_type": pl.String, "input_tokens": pl.Int64, "output_tokens": pl.Int64, "request_time": TIME}
    )
    return pl.concat([_empty(SPAN_COSTS), extra], how="horizontal")


def _empty(spec: TableSpec) -> pl.DataFrame:
    frame = pl.from_arrow(spec.schema.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


# --- judge spend ------------------------------------------------------------------------------


JUDGE_SCHEMA: dict[str, pl.DataType] = {
    "start_time": pl.Datetime("us", "UTC"), "model": pl.String(), "cost_usd": pl.Float64(),
    **{c: pl.Int64() for c in SPLIT},
}  # fmt: skip


def _judge_rows(judged: DeltaTable | None, intervals: list[Interval], prices: PriceList) -> pl.DataFrame:
    """Judge results with a judge model in the intervals, priced as spans (start = created_at)."""
    if judged is None or not intervals:
        return pl.DataFrame(schema=JUDGE_SCHEMA)
    results = (
        pl.scan_delta(judged).filter(_within(intervals, "created_at") & pl.col("judge_model").is_not_null())
        .select(start_time="created_at", model="judge_model", input_tokens="judge_input_tokens",
                output_tokens="judge_output_tokens")
        .with_columns(provider=pl.lit(None, pl.String), provided_cost_usd=pl.lit(None, pl.Float64),
                      **{c: pl.lit(None, pl.Int64) for c in ("cache_read_input_tokens", "cache_creation_input_tokens",
                                                               "reasoning_output_tokens")})
        .collect()
    )  # fmt: skip
    return price_spans(results, prices).select("start_time", "model", "cost_usd", *_split())


# --- writes -----------------------------------------------------------------------------------


def _arrow(frame: pl.DataFrame, spec: TableSpec) -> pa.Table:
    return frame.select(spec.column_names).to_arrow().cast(spec.schema)


def _replace(table: DeltaTable, spec: TableSpec, rows: pl.DataFrame, predicate: str, commit: CommitProperties) -> int:
    """Replace the rows matching `predicate` with `rows`, and record the watermark, in one commit."""
    data = _arrow(rows, spec)
    if predicate:
        write_deltalake(table, data, mode="overwrite", predicate=predicate, partition_by=list(spec.partition_by),
                        writer_properties=writer_properties(spec), commit_properties=commit,
                        post_commithook_properties=NO_CHECKPOINT)  # fmt: skip
    else:  # nothing to replace: the watermark alone
        write_deltalake(table, data.slice(0, 0), mode="append", commit_properties=commit,
                        post_commithook_properties=NO_CHECKPOINT)  # fmt: skip
    return data.num_rows


def _trace_parts(rows: pl.DataFrame) -> pl.DataFrame:
    """Per trace of span_costs `rows`, its sums (TRACE_COSTS' columns but day): summed again over
    several such frames (`_per_trace`), they give the sums over all their rows."""
    return _per_trace(rows.select(
        "trace_id", "request_time", "input_tokens", "output_tokens", "cost_usd",
        priced_spans=pl.col("cost_usd").is_not_null().cast(pl.Int64),
        unpriced_spans=pl.col("cost_usd").is_null().cast(pl.Int64),
    ))  # fmt: skip


def _per_trace(parts: pl.DataFrame) -> pl.DataFrame:
    # Every row is a counted model call: a total is null exactly when trace_info's is (tables.tokens).
    return parts.group_by("trace_id").agg(
        pl.col("request_time").first(),
        *(pl.when(pl.col(c).is_not_null().any()).then(pl.col(c).sum()).alias(c)
          for c in ("input_tokens", "output_tokens", "cost_usd")),
        pl.col("priced_spans", "unpriced_spans").sum(),
    )  # fmt: skip


def _trace_rows(rows: pl.DataFrame, traces: pl.DataFrame | None, info: DeltaTable) -> pl.DataFrame:
    """trace_costs rows of `traces` (trace_id, request_time; None: every trace) from their span_costs rows."""
    mine = rows if traces is None else rows.join(traces.select("trace_id"), on="trace_id", how="semi")
    per_trace = _trace_parts(mine).drop("request_time")
    requested = (
        pl.scan_delta(info).select("trace_id", "request_time")
        .join(per_trace.lazy().select("trace_id"), on="trace_id", how="semi").unique("trace_id").collect()
        if traces is None else traces
    )  # fmt: skip
    return per_trace.join(requested, on="trace_id").with_columns(day=pl.col("request_time").dt.date())


def _write_trace_costs(
    table: DeltaTable, rows: pl.DataFrame, plan: _Plan, info: DeltaTable, commit: CommitProperties
) -> int:
    if plan.traces is not None and plan.traces.is_empty():
        return _replace(table, TRACE_COSTS, _empty(TRACE_COSTS), "", commit)
    new = _trace_rows(rows, plan.traces, info)
    if plan.traces is None:  # every trace: the whole table
        data = _arrow(new, TRACE_COSTS)
        write_deltalake(table, data, mode="overwrite", partition_by=["day"], writer_properties=writer_properties(TRACE_COSTS),
                        commit_properties=commit, post_commithook_properties=NO_CHECKPOINT)  # fmt: skip
        return data.num_rows
    # A trace's request_time only moves earlier: its stored row, if any, is on that day or later.
    first = plan.traces["request_time"].min()
    assert isinstance(first, dt.datetime)
    stored = (
        pl.scan_delta(table).filter(pl.col("day") >= first.date()).select("trace_id", "day")
        .join(plan.traces.lazy().select("trace_id"), on="trace_id", how="semi").collect()
    )  # fmt: skip
    gone = stored.join(new.select("trace_id", "day"), on=["trace_id", "day"], how="anti")
    source = pl.concat([new.select(TRACE_COSTS.column_names).with_columns(_delete=pl.lit(False)),
                        gone.with_columns(_delete=pl.lit(True))], how="diagonal_relaxed")  # fmt: skip
    if source.is_empty():
        return _replace(table, TRACE_COSTS, new.head(0), "", commit)
    values = {c: f"s.{c}" for c in TRACE_COSTS.column_names}
    (
        table.merge(source.to_arrow(), predicate="t.day = s.day AND t.trace_id = s.trace_id", source_alias="s",
                    target_alias="t", writer_properties=writer_properties(TRACE_COSTS), commit_properties=commit,
                    post_commithook_properties=NO_CHECKPOINT)
        .when_matched_delete(predicate="s._delete")
        .when_matched_update(values, predicate="NOT s._delete")
        .when_not_matched_insert(values, predicate="NOT s._delete")
        .execute()
    )  # fmt: skip
    return new.height


def _aggregate(frame: pl.DataFrame, window: str, keys: list[str]) -> pl.DataFrame:
    return frame.group_by(keys).agg(
        cost_usd=pl.when(pl.col("cost_usd").is_not_null().any()).then(pl.col("cost_usd").sum()),
        spans=pl.col("spans").sum().cast(pl.Int64) if "spans" in frame.columns else pl.len().cast(pl.Int64),
        unpriced_spans=pl.col("unpriced_spans").sum().cast(pl.Int64) if "unpriced_spans" in frame.columns
        else pl.col("cost_usd").is_null().sum().cast(pl.Int64),
        **{c: pl.col(c).sum().cast(pl.Int64) for c in SPLIT},
    ).with_columns(window=pl.lit(window), day=pl.col("window_start").dt.date())  # fmt: skip


ROLLUP_KEYS = ["window_start", "kind", *DIMENSIONS]


def _hourly(rows: pl.DataFrame, judged: pl.DataFrame) -> pl.DataFrame:
    """Hour rollups of span_costs rows (kind app) and priced judge results (kind judge)."""
    hour = pl.col("start_time").dt.truncate("1h").alias("window_start")
    app = rows.select(hour, *DIMENSIONS, *SPLIT, "cost_usd").with_columns(kind=pl.lit("app"))
    judge = judged.select(hour, "model", *SPLIT, "cost_usd").with_columns(kind=pl.lit("judge"))
    return _aggregate(pl.concat([app, judge], how="diagonal_relaxed"), "hour", ROLLUP_KEYS)


def _write_rollups(
    table: DeltaTable, rows: pl.DataFrame, judged: pl.DataFrame, plan: _Plan, commit: CommitProperties
) -> tuple[int, int]:
    hourly = _hourly(rows, judged)
    days = _days(plan.app + plan.judge)
    if not days:
        return _replace(table, COST_ROLLUPS, hourly.head(0), "", commit), 0
    # A day's rows are the sum of its hours: the stored ones not being replaced, and the new.
    replaced = (pl.col("kind") == "app") & _within(plan.app, "window_start") | (
        (pl.col("kind") == "judge") & _within(plan.judge, "window_start"))  # fmt: skip
    kept = (
        pl.scan_delta(table).filter((pl.col("window") == "hour") & _within(days, "window_start") & ~replaced)
        .collect()
    )  # fmt: skip
    both = pl.concat([kept.select(hourly.columns), hourly.select(hourly.columns)], how="vertical_relaxed")
    daily = _aggregate(both.with_columns(pl.col("window_start").dt.truncate("1d")), "day", ROLLUP_KEYS)
    new = pl.concat([hourly.select(COST_ROLLUPS.column_names), daily.select(COST_ROLLUPS.column_names)])
    terms = [f"(\"window\" = 'hour' AND kind = '{kind}' AND ({_sql_within(iv, 'window_start')}))"
             for kind, iv in (("app", plan.app), ("judge", plan.judge)) if iv]  # fmt: skip
    terms.append(f"(\"window\" = 'day' AND ({_sql_within(days, 'window_start')}))")
    written = _replace(table, COST_ROLLUPS, new, " OR ".join(terms), commit)
    return written, new.select("window", "window_start").n_unique()


# --- a rebuild, day by day ---------------------------------------------------------------------


def _rebuild(
    targets: dict[str, DeltaTable], sources: dict[str, DeltaTable | None], start: dt.date | None, prices: PriceList,
    commit: CommitProperties, result: CostRun,
) -> None:  # fmt: skip
    """Every day from `start` on (None: all) recomputed whole, with one day of model-call spans in
    memory at a time; each table's day partitions are replaced by partition overwrites (of two
    runs writing one day at once, the later commit fails and its run starts over). The watermark
    rides on each table's last commit only, so a run that dies midway is redone by the next.

    A trace's row is written once no later span can belong to its day's traces (their latest
    end_time, from the trace_info log's statistics: `span_days`); until then its sums wait."""
    spans, info, judged = sources["span_data"], sources["trace_info"], sources["assessments"]
    assert spans is not None and info is not None
    stored = {name: partition_days(t) for name, t in targets.items()}
    trace_days = partition_days(info)
    found = trace_days | partition_days(spans) | (partition_days(judged) if judged else set())
    days = sorted(d for d in found.union(*stored.values()) if start is None or d >= start)
    last_span_day = {d: span_days(info, (d, d))[1] for d in trace_days if d in days}  # None: unknown
    pending = _trace_parts(_empty_span_costs())
    done: set[dt.date] = set()
    for i, day in enumerate(days):
        final = commit if i == len(days) - 1 else None
        midnight = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
        rows = _span_costs(spans, info, [(midnight, midnight + DAY)], prices)
        judge_rows = _judge_rows(judged, [(midnight, midnight + DAY)], prices)
        result.spans_read += rows.height + judge_rows.height
        rollups = _rollups(rows, judge_rows)
        result.rows_written += _write_hours(
            targets[SPAN_COSTS.name], SPAN_COSTS, rows, day, "start_time", stored, final
        )
        result.rows_written += _write_hours(
            targets[COST_ROLLUPS.name], COST_ROLLUPS, rollups, day, "window_start", stored, final
        )
        result.windows_recomputed += rollups.select("window", "window_start").n_unique()
        parts = _trace_parts(rows.filter(pl.col("request_time").is_not_null()))
        if start is not None:  # traces before the rebuilt days keep their rows
            parts = parts.filter(pl.col("request_time").dt.date() >= start)
        if again := set(parts["request_time"].dt.date().unique()) & done:  # a span past its trace's end_time
            back = pl.scan_delta(targets[TRACE_COSTS.name]).filter(pl.col("day").is_in(sorted(again))).collect()
            parts = pl.concat([parts, back.select(parts.columns)])
            done -= again
            last_span_day.update(dict.fromkeys(again))
        pending = _per_trace(pl.concat([pending, parts])) if parts.height else pending
        ready = {d for d in days[: i + 1] if d not in done and (final or _spans_over(last_span_day.get(d, d), day))}
        if final:
            ready |= set(pending["request_time"].dt.date().unique())
        is_ready = pl.col("request_time").dt.date().is_in(sorted(ready))
        rows_out = pending.filter(is_ready).with_columns(day=pl.col("request_time").dt.date())
        result.rows_written += _write_days(
            targets[TRACE_COSTS.name], TRACE_COSTS, rows_out, sorted(ready), stored, final
        )
        pending, done = pending.filter(~is_ready), done | ready


def _spans_over(last: dt.date | None, day: dt.date) -> bool:
    return last is not None and last <= day


def _write_days(
    table: DeltaTable, spec: TableSpec, rows: pl.DataFrame, days: list[dt.date], stored: dict[str, set[dt.date]],
    commit: CommitProperties | None,
) -> int:  # fmt: skip
    """Replace the day partitions `days` of `table` with `rows` (`stored`: the days that may hold
    rows), in one commit carrying `commit`; nothing to replace and no commit: no write."""
    if rows.is_empty() and not stored[spec.name] & set(days) and commit is None:
        return 0
    data = _arrow(rows, spec)
    # An overwrite, not an append, even of an empty day: two runs appending one day would both win.
    predicate = " OR ".join(f"day = '{d}'" for d in days) or "false"
    write_deltalake(table, data, mode="overwrite", predicate=predicate, partition_by=list(spec.partition_by),
                    writer_properties=writer_properties(spec), commit_properties=commit,
                    post_commithook_properties=NO_CHECKPOINT)  # fmt: skip
    stored[spec.name] |= set(days)
    return data.num_rows


def _write_hours(
    table: DeltaTable, spec: TableSpec, rows: pl.DataFrame, day: dt.date, col: str, stored: dict[str, set[dt.date]],
    commit: CommitProperties | None,
) -> int:  # fmt: skip
    """A day's rows written as one file per FILE_HOURS hours of `col` (a commit each, the first
    replacing the whole day), so that an incremental run's replace of a few hours, pruned by the
    files' statistics, rewrites those hours' files and not the day's."""
    by_file = rows.sort(col).with_columns(_file=pl.col(col).dt.hour() // FILE_HOURS)
    chunks = by_file.partition_by("_file", maintain_order=True, include_key=False) if rows.height else []
    if len(chunks) <= 1:
        return _write_days(table, spec, rows, [day], stored, commit)
    written = _write_days(table, spec, chunks[0], [day], stored, None)
    midnight = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    for i, chunk in enumerate(chunks[1:], 1):
        first = chunk[col].min()
        assert isinstance(first, dt.datetime)
        lo = midnight + first.hour // FILE_HOURS * FILE_HOURS * HOUR
        hours = f"day = '{day}' AND {col} >= {_sql_time(lo)} AND {col} < {_sql_time(lo + FILE_HOURS * HOUR)}"
        written += _append_where(table, spec, chunk, hours, commit if i == len(chunks) - 1 else None)
    return written


def _append_where(
    table: DeltaTable, spec: TableSpec, rows: pl.DataFrame, predicate: str, commit: CommitProperties | None
) -> int:
    # An overwrite of rows the day's first commit already removed: a concurrent writer of these
    # hours makes it fail, where an append would add the hours twice.
    data = _arrow(rows, spec)
    write_deltalake(table, data, mode="overwrite", predicate=predicate, partition_by=list(spec.partition_by),
                    writer_properties=writer_properties(spec), commit_properties=commit,
                    post_commithook_properties=NO_CHECKPOINT)  # fmt: skip
    return data.num_rows


def _reprice_start(info: DeltaTable | None, since: dt.date) -> dt.date:
    """The first day to rebuild when re-pricing from `since`: every trace with a span from then on
    is rewritten with all its spans, and so is every trace with a span on the days that adds."""
    assert info is not None
    start = since
    while True:
        midnight = dt.datetime.combine(start, dt.time(), dt.timezone.utc)
        first = (
            pl.scan_delta(info).filter(pl.col("end_time").is_null() | (pl.col("end_time") >= midnight - SKEW))
            .select(pl.col("request_time").min()).collect().item()
        )  # fmt: skip
        earlier = (first - SKEW).date() if isinstance(first, dt.datetime) else start
        if earlier >= start:
            return start
        start = earlier


def _rollups(rows: pl.DataFrame, judged: pl.DataFrame) -> pl.DataFrame:
    """Hour and day windows of whole days' span_costs rows and priced judge results."""
    hourly = _hourly(rows, judged)
    daily = _aggregate(hourly.with_columns(pl.col("window_start").dt.truncate("1d")), "day", ROLLUP_KEYS)
    return pl.concat([hourly.select(COST_ROLLUPS.column_names), daily.select(COST_ROLLUPS.column_names)])


def costs_from_scratch(
    *, warehouse: str, storage_options: Mapping[str, str] | None = None, prices: PriceList | None = None
) -> dict[str, pl.DataFrame]:
    """The three cost tables computed from all of span_data, trace_info and assessments, without
    writing anything: what an up-to-date warehouse's tables hold (sorted, for comparison)."""
    options = dict(storage_options or {}) or None
    spans, info = _open(warehouse, "span_data", options), _open(warehouse, "trace_info", options)
    if spans is None or info is None:
        raise TableError(f"costs: no span_data or trace_info in warehouse {warehouse} (run `spanlake ingest` first)")
    prices = prices or PriceList()
    everything = [(EPOCH, END)]
    rows = _span_costs(spans, info, everything, prices)
    judged = _judge_rows(_open(warehouse, "assessments", options), everything, prices)
    return {
        SPAN_COSTS.name: rows.select(SPAN_COSTS.column_names).sort("trace_id", "span_id"),
        TRACE_COSTS.name: _trace_rows(rows, None, info).select(TRACE_COSTS.column_names).sort("trace_id"),
        COST_ROLLUPS.name: _rollups(rows, judged).sort(pl.all()),
    }
