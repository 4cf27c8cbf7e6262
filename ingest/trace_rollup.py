"""Merge a batch's partial trace rows into `trace_info`, so one trace is always one row, whatever
its duration and the order its spans arrive in (docs/DESIGN.md, "One row per trace").

Per batch, on the snapshot the MERGE then commits against:
1. `locate` finds the stored row of each batch trace (its exact day and request_time) by reading
   only the files that can hold it: a row with its root contains its spans in time, a root
   contains its trace's other spans, and the rows still waiting for their root are listed in the
   small `open_traces` table.
2. `token_corrections` looks up, in span_data, the stored parents and children of the batch's
   model-call spans, so the token-counting rule (spanlake.tables.tokens) is applied across
   batches: a signed delta per trace, added by the MERGE like any other partial sum.
3. The MERGE joins each partial to its row at that exact location; its predicate names those
   days and request_time ranges literally, so delta-rs reads and rewrites only the files that
   hold them, however full the day is.
Then `open_changes` says how `open_traces` must change to match what trace_info now holds: the
MERGE returns the rows it left (`merged_rows`), so only a replay reads trace_info again (`held_rows`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable

from spanlake.tables.delta import NO_CHECKPOINT, writer_properties
from spanlake.tables.schemas import OPEN_TRACES, TRACE_INFO
from spanlake.tables.tokens import TOKEN_COLUMNS, counts_tokens, is_model_call, reports_usage

logger = logging.getLogger(__name__)

# Clock tolerance: a span may start this far outside its root's [start, end] (clock skew between
# services, work that outlives its request). A trace whose spans stray further can get two rows.
SKEW = dt.timedelta(minutes=5)
# Predicates name at most this many time ranges: points closer than GAP share one range.
MAX_RANGES = 16
GAP = dt.timedelta(seconds=1)

Range = tuple[dt.datetime, dt.datetime]
_PARTIAL_COLUMNS = ["trace_id", "request_time", "end_time", "root_span_id", "day"]
LOCATION_COLUMNS = ["trace_id", "day", "request_time", "end_time", "root_span_id", "llm_call_count"]


def _add(col: str) -> str:
    # null + n = n: a side that reported no tokens must not erase the other's count
    return f"CASE WHEN t.{col} IS NULL THEN s.{col} WHEN s.{col} IS NULL THEN t.{col} ELSE t.{col} + s.{col} END"


def _root_side(col: str) -> str:
    # The side holding the root span decides; otherwise keep what is known.
    return f"CASE WHEN s.root_span_id IS NOT NULL THEN coalesce(s.{col}, t.{col}) ELSE coalesce(t.{col}, s.{col}) END"


def _us(expr: str) -> str:
    return f"CAST({expr} AS BIGINT)"


REQUEST_TIME = "least(t.request_time, s.request_time)"
END_TIME = "greatest(t.end_time, s.end_time)"

UPDATES: dict[str, str] = {
    "request_time": REQUEST_TIME,
    "end_time": END_TIME,
    "duration_ms": f"CAST({_us(END_TIME)} - {_us(REQUEST_TIME)} AS DOUBLE) / 1000.0",
    "state": "CASE WHEN s.root_span_id IS NOT NULL THEN s.state ELSE t.state END",
    "span_count": "t.span_count + s.span_count",
    "error_count": "t.error_count + s.error_count",
    "llm_call_count": "t.llm_call_count + s.llm_call_count",
    **{col: _add(col) for col in TOKEN_COLUMNS},  # s holds signed deltas (see token_corrections)
    "models": "array_distinct(array_concat(coalesce(t.models, make_array()), coalesce(s.models, make_array())))",
    **{
        col: _root_side(col)
        for col in (
            "root_span_id", "root_span_name", "service_name", "environment", "user_id", "session_id",
            "request_preview", "response_preview",
        )
    },  # fmt: skip
    "tags": "CASE WHEN s.root_span_id IS NOT NULL THEN s.tags ELSE t.tags END",
    "metadata": "CASE WHEN s.root_span_id IS NOT NULL OR t.root_span_id IS NULL THEN s.metadata ELSE t.metadata END",
    "ingested_at": "s.ingested_at",
    "day": f"CAST({REQUEST_TIME} AS DATE)",
}
INSERTS = {c: f"s.{c}" for c in TRACE_INFO.column_names}


# --- predicates ---------------------------------------------------------------------------


def ranges(intervals: Sequence[Range], gap: dt.timedelta = GAP, limit: int = MAX_RANGES) -> list[Range]:
    """Cover `intervals` with at most `limit` ranges: overlapping ones (or closer than `gap`)
    are joined, then the smallest gaps are closed until `limit` ranges remain."""
    merged: list[list[dt.datetime]] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1] + gap:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    if len(merged) > limit:  # keep the widest gaps as the cuts
        gaps = sorted(range(1, len(merged)), key=lambda i: merged[i][0] - merged[i - 1][1], reverse=True)
        cuts = sorted(gaps[: limit - 1])
        starts = [0, *cuts]
        ends = [*cuts, len(merged)]
        merged = [[merged[a][0], merged[b - 1][1]] for a, b in zip(starts, ends, strict=True)]
    return [(lo, hi) for lo, hi in merged]


def _between(col: str, r: Range) -> pl.Expr:
    return pl.col(col).is_between(pl.lit(r[0]), pl.lit(r[1]))


def _days_of(r: Range) -> pl.Expr:
    return pl.col("day").is_between(pl.lit(r[0].date()), pl.lit(r[1].date()))


def _any(terms: list[pl.Expr]) -> pl.Expr:
    out = pl.lit(False)
    for term in terms:
        out = out | term
    return out


def _sql_time(value: dt.datetime) -> str:
    return f"'{value.astimezone(dt.UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'::timestamp"


def _ids(frame: pl.DataFrame, col: str = "trace_id") -> pl.Expr:
    return pl.col(col).is_in(frame[col].unique().implode())


# --- 1. where each trace's row is ---------------------------------------------------------


def open_rows(table: DeltaTable, partials: pl.DataFrame) -> pl.DataFrame:
    """`open_traces` entries (trace_id, request_time, day) of the partials' traces."""
    return pl.scan_delta(table).filter(_ids(partials)).select(OPEN_TRACES.column_names).collect()


def locate(table: DeltaTable, partials: pl.DataFrame, listed: pl.DataFrame) -> pl.DataFrame:
    """The stored trace_info rows (LOCATION_COLUMNS) of the partials' traces, on `table`'s snapshot.

    A stored row S of a partial P's trace is in one of three places (s, e: P's earliest start and
    latest end; sane clocks within SKEW):
    - S has its root: the root's [start, end] holds P's spans, so S.request_time <= s + SKEW and
      S.end_time >= s - SKEW. File statistics on end_time skip every file of traces that ended
      before, which for a live stream is all but the last minutes of files;
    - S has no root and P has it: S's spans lie within the root, S.request_time in [s, e] +- SKEW;
    - neither has the root: the pieces need not overlap in time; `listed` (open_traces) has S.
    """
    starts = partials["request_time"].to_list()
    contains = [
        (pl.col("request_time") <= pl.lit(hi + SKEW)) & (pl.col("end_time") >= pl.lit(lo - SKEW))
        & (pl.col("day") <= pl.lit((hi + SKEW).date()))
        for lo, hi in ranges([(s, s) for s in starts], gap=SKEW)
    ]  # fmt: skip
    rooted = partials.filter(pl.col("root_span_id").is_not_null())
    within = [
        _between("request_time", r) & _days_of(r)
        for r in ranges([(s - SKEW, e + SKEW) for s, e in rooted.select("request_time", "end_time").iter_rows()])
    ]
    exact = [
        _between("request_time", r) & _days_of(r) for r in ranges([(t, t) for t in listed["request_time"].to_list()])
    ]
    return (
        pl.scan_delta(table)
        .filter(_ids(partials) & _any(contains + within + exact))
        .select(LOCATION_COLUMNS)
        .collect()
        .sort("request_time")
        .unique("trace_id", keep="first", maintain_order=True)  # duplicates of older versions: the first
    )


# --- 2. tokens across batches -------------------------------------------------------------


@dataclass(frozen=True)
class SpanLookup:
    """span_data and what of it trace_info has counted: `counted(frame)` is True for a row
    (with topic, partition, offset) whose message trace_info's snapshot already holds."""

    table: DeltaTable
    counted: Callable[[pl.DataFrame], pl.Series]


_SPAN_COLUMNS = ["trace_id", "span_id", "parent_span_id", "span_type", *TOKEN_COLUMNS, "start_time", "end_time"]


def _stored_spans(lookup: SpanLookup, batch: pl.DataFrame, where: pl.Expr) -> pl.DataFrame:
    """span_data rows matching `where` that trace_info has counted, other than the batch's own."""
    found = pl.scan_delta(lookup.table).filter(where).select(*_SPAN_COLUMNS, "topic", "partition", "offset").collect()
    if found.is_empty():
        return found.select(_SPAN_COLUMNS)
    found = found.filter(lookup.counted(found)).unique(["trace_id", "span_id"])
    return found.join(batch, on=["trace_id", "span_id"], how="anti").select(_SPAN_COLUMNS)


def token_corrections(lookup: SpanLookup, spans: pl.DataFrame, stored: pl.DataFrame) -> pl.DataFrame:
    """Per trace, the signed change of its token totals that the batch's partial (computed within
    the batch) misses: its model-call spans wrapping a stored call that reports usage do not
    count, and a stored model-call span the batch shows to be a wrapper stops counting.

    Only traces whose stored row has model calls can be affected. For them N = batch spans +
    stored parents of the batch's usage-reporting calls + stored children of the batch's calls
    and of those parents: every span whose counting can change (the batch's, the parents) has
    all its children in N, so applying the rule over N, before and after, gives the exact change.
    """
    affected = stored.filter(pl.col("llm_call_count") > 0)
    batch = spans.select(_SPAN_COLUMNS).join(affected.select("trace_id"), on="trace_id", how="semi")
    calls = batch.filter(is_model_call())
    if calls.is_empty():
        return pl.DataFrame(schema={"trace_id": pl.String, **{c: pl.Int64 for c in TOKEN_COLUMNS}})
    lookup.table.update_incremental()  # the stored spans trace_info counts may be newer than our handle
    first_day = affected["day"].min()
    orphaned = (
        calls.filter(reports_usage() & pl.col("parent_span_id").is_not_null())
        .join(batch, left_on=["trace_id", "parent_span_id"], right_on=["trace_id", "span_id"], how="anti")
    )  # fmt: skip
    parents = batch.clear()
    if not orphaned.is_empty():  # a parent contains its child: it ends after the child ends
        latest_start: dt.datetime = orphaned["start_time"].max() + SKEW  # type: ignore[operator,assignment]
        parents = _stored_spans(lookup, batch, (
            _ids(orphaned) & pl.col("span_id").is_in(orphaned["parent_span_id"].implode())
            & pl.col("day").is_between(pl.lit(first_day), pl.lit(latest_start.date()))
            & (pl.col("end_time") >= pl.lit(orphaned["end_time"].min() - SKEW))  # type: ignore[operator]
            & (pl.col("start_time") <= pl.lit(latest_start))
        ))  # fmt: skip
    owners = pl.concat([calls, parents.filter(is_model_call())])  # a child starts within its parent
    windows = ranges([(s - SKEW, e + SKEW) for s, e in owners.select("start_time", "end_time").iter_rows()])
    children = _stored_spans(lookup, batch, (
        _ids(owners) & pl.col("parent_span_id").is_in(owners["span_id"].implode())
        & _any([_between("start_time", w) & _days_of(w) for w in windows])
    ))  # fmt: skip
    near = pl.concat(
        [batch.with_columns(in_batch=pl.lit(True)), pl.concat([parents, children]).with_columns(in_batch=pl.lit(False))]
    ).unique(["trace_id", "span_id"], keep="first", maintain_order=True)
    near = near.with_columns(after=counts_tokens(near))
    alone = [near.filter(pl.col("in_batch") == side) for side in (True, False)]
    judged = pl.concat([part.with_columns(before=counts_tokens(part)) for part in alone])
    # Only the batch's spans (the partial judged them within the batch) and the stored parents can
    # change; other stored spans in N need not have all their children there.
    movable = judged.join(
        parents.select("trace_id", "span_id", is_parent=pl.lit(True)), on=["trace_id", "span_id"], how="left"
    ).filter((pl.col("in_batch") | pl.col("is_parent").is_not_null()) & (pl.col("after") != pl.col("before")))
    sign = pl.when(pl.col("after")).then(1).otherwise(-1)
    return movable.group_by("trace_id").agg(
        pl.when(pl.col(c).is_not_null().any()).then((pl.col(c) * sign).sum()).otherwise(None).alias(c)
        for c in TOKEN_COLUMNS
    )


def with_corrections(partials: pa.Table, deltas: pl.DataFrame) -> pa.Table:
    """`partials` with `deltas` (per trace_id) added to their token columns (null + n = n)."""
    if deltas.is_empty():
        return partials
    own = pl.from_arrow(partials.select(["trace_id", *TOKEN_COLUMNS]))
    assert isinstance(own, pl.DataFrame)
    summed = own.join(deltas, on="trace_id", how="left", suffix="_delta", maintain_order="left").select(
        pl.when(pl.col(c).is_null()).then(pl.col(f"{c}_delta"))
        .when(pl.col(f"{c}_delta").is_null()).then(pl.col(c))
        .otherwise(pl.col(c) + pl.col(f"{c}_delta"))
        .alias(c)
        for c in TOKEN_COLUMNS
    )  # fmt: skip
    for c in TOKEN_COLUMNS:
        partials = partials.set_column(partials.schema.get_field_index(c), c, summed[c].to_arrow().cast(pa.int64()))
    return partials


# --- 3. the MERGE ---------------------------------------------------------------------------


def merge_traces(
    table: DeltaTable, open_table: DeltaTable, lookup: SpanLookup, partials: pa.Table, spans: pa.Table,
    commit: CommitProperties,
) -> pl.DataFrame:  # fmt: skip
    """Upsert `partials` (one per trace of `spans`) into trace_info in one commit that also
    records `commit`'s offsets; returns `merged_rows`. Runs inside the commit's retry loop: a lost
    race re-locates."""
    where = _frame(partials.select(_PARTIAL_COLUMNS))
    open_table.update_incremental()
    stored = locate(table, where, open_rows(open_table, where))
    partials = with_corrections(partials, token_corrections(lookup, _frame(spans.select(_SPAN_COLUMNS)), stored))
    # Each partial joins its row at the exact (day, request_time) found; a new trace gets a row at
    # its own request_time, where no row of it exists.
    joined = where.join(stored, on="trace_id", how="left", suffix="_stored", maintain_order="left")
    target = joined.select(
        target_time=pl.coalesce("request_time_stored", "request_time"), target_day=pl.coalesce("day_stored", "day")
    )
    source = partials.append_column("target_time", target["target_time"].to_arrow()).append_column(
        "target_day", target["target_day"].to_arrow()
    )
    days = ", ".join(f"'{d.isoformat()}'::date" for d in sorted(set(target["target_day"].to_list())))
    times = " OR ".join(
        f"t.request_time BETWEEN {_sql_time(lo)} AND {_sql_time(hi)}"
        for lo, hi in ranges([(t, t) for t in target["target_time"].to_list()])
    )
    (
        table.merge(
            source,
            # The join names the exact location; the literal days and ranges are what lets delta-rs
            # skip every other file (it derives no useful pruning from the join columns).
            predicate=(
                "t.trace_id = s.trace_id AND t.day = s.target_day AND t.request_time = s.target_time"
                f" AND t.day IN ({days}) AND ({times})"
            ),
            source_alias="s",
            target_alias="t",
            writer_properties=writer_properties(TRACE_INFO),
            commit_properties=commit,
            post_commithook_properties=NO_CHECKPOINT,
        )
        .when_matched_update(UPDATES)
        .when_not_matched_insert(INSERTS)
        .execute()
    )
    return merged_rows(joined)


def merged_rows(joined: pl.DataFrame) -> pl.DataFrame:
    """The rows (trace_id, request_time, day, root_span_id) the MERGE leaves for partials `joined`
    to their stored rows (suffix _stored): what UPDATES and INSERTS make of those columns."""
    request_time = pl.min_horizontal("request_time", "request_time_stored")  # least(): nulls ignored
    return joined.select(
        "trace_id", request_time=request_time, day=request_time.dt.date(),
        root_span_id=pl.coalesce("root_span_id", "root_span_id_stored"),
    )  # fmt: skip


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


# --- open_traces ----------------------------------------------------------------------------


def open_changes(open_table: DeltaTable, rows: pl.DataFrame) -> pl.DataFrame:
    """What makes `open_traces` list exactly the traces of `rows` (trace_id, request_time, day,
    root_span_id: trace_info's rows as the batch left them) that have no root yet, at that row's
    location (OPEN_TRACES columns + keep: False deletes). Idempotent: a replay computes the same."""
    listed = open_rows(open_table, rows)
    wanted = rows.filter(pl.col("root_span_id").is_null()).select(OPEN_TRACES.column_names)
    upserts = wanted.join(listed, on=OPEN_TRACES.column_names, how="anti").with_columns(keep=pl.lit(True))
    deletes = listed.join(wanted, on="trace_id", how="anti").with_columns(keep=pl.lit(False))
    return pl.concat([upserts, deletes]).unique("trace_id", keep="first")


def held_rows(open_table: DeltaTable, table: DeltaTable, partials: pa.Table) -> pl.DataFrame:
    """The partials' traces' rows as trace_info holds them now, for `open_changes` when this process
    did not just MERGE them (a replay after a crash between the two commits)."""
    frame = _frame(partials.select(_PARTIAL_COLUMNS))
    return locate(table, frame, open_rows(open_table, frame))


def write_open(open_table: DeltaTable, changes: pl.DataFrame, commit: CommitProperties) -> None:
    """Apply `changes` (OPEN_TRACES columns + keep) to open_traces: keep=True upserts, False deletes."""
    columns = {c.name: changes[c.name].to_arrow().cast(c.type) for c in OPEN_TRACES.columns}
    source = pa.table({**columns, "keep": changes["keep"].to_arrow()})
    (
        open_table.merge(
            source, predicate="t.trace_id = s.trace_id", source_alias="s", target_alias="t",
            writer_properties=writer_properties(OPEN_TRACES), commit_properties=commit,
            post_commithook_properties=NO_CHECKPOINT,
        )  # fmt: skip
        .when_matched_delete(predicate="NOT s.keep")
        .when_matched_update({"request_time": "s.request_time", "day": "s.day"}, predicate="s.keep")
        .when_not_matched_insert({c: f"s.{c}" for c in OPEN_TRACES.column_names}, predicate="s.keep")
        .execute()
    )


def all_open(table: DeltaTable) -> pl.DataFrame:
    """Every IN_PROGRESS row of trace_info as open_traces changes (a one-time full scan: adopting
    a warehouse written before open_traces existed)."""
    return (
        pl.scan_delta(table)
        .filter(pl.col("root_span_id").is_null())
        .select(OPEN_TRACES.column_names)
        .collect()
        .sort("request_time")
        .unique("trace_id", keep="first")
        .with_columns(keep=pl.lit(True))
    )
