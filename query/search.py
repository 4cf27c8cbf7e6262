"""Trace search over `trace_info`: `search_traces` (one page at a time), `count_traces`, and
the page token that makes paging stable while ingest keeps writing.

A page token is urlsafe base64 (no padding) of JSON
    {"v": 1, "q": <query fingerprint>, "t": <trace_info version>, "s": <span_data version | null>,
     "k": [<sort key values of the page's last row>..., <its trace_id>],
     "a": <assessments version, -1 while the table is missing; only for feedback./expectation. filters>,
     "c": <trace_costs version, -1 while the table is missing>}
Every page reads the Delta versions the first page read, so MERGEs and appends that land
between page reads are invisible to the rest of the walk (no duplicates, no gaps), and the
keyset cursor `k` starts the next page right after the last row (no OFFSET re-scan). Each page
holds the trace_info columns plus `cost_usd` (spanlake.query.costs: null when unpriced).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import json
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from spanlake.errors import FilterError
from spanlake.query.assessments import assessments_since, with_validity
from spanlake.query.costs import COST_COLUMN, require_costs, with_page_costs, with_trace_cost
from spanlake.query.filters import (
    ASSESSMENT_MATCH,
    SPAN_MATCH,
    CompiledFilter,
    any_of,
    compile_filter,
    order_key,
    parse_time_us,
)
from spanlake.query.grammar import Literal
from spanlake.query.location import open_delta, open_if_exists, open_table, warehouse_location
from spanlake.tables.schemas import TRACE_INFO

__all__ = ["TracePage", "count_traces", "scan_traces", "search_traces", "spans_of", "trace_id_in"]

TimeArg = dt.datetime | dt.date | int | float | str | None
DEFAULT_ORDER = ("request_time DESC",)
TOKEN_VERSION = 1
_KEY = "__key_{}"
_ONE_DAY = dt.timedelta(days=1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class TracePage:
    """One page of `search_traces`: `frame` holds the trace_info rows, `next_page_token` is
    None on the last page. Anything else is delegated to the frame, so `page.height`,
    `page["trace_id"]`, `page.to_dicts()` and `len(page)` work as on a DataFrame.
    """

    frame: pl.DataFrame
    next_page_token: str | None

    def __getattr__(self, name: str) -> Any:
        if name == "frame":  # not set yet (copy/pickle): never recurse
            raise AttributeError(name)
        return getattr(self.frame, name)

    def __getitem__(self, item: Any) -> Any:
        return self.frame[item]

    def __len__(self) -> int:
        return self.frame.height

    def __iter__(self) -> Iterator[Any]:
        return iter(self.frame)


@dataclass(frozen=True)
class _Query:
    """Everything a search computes from its arguments, before touching a table."""

    compiled: CompiledFilter
    keys: tuple[tuple[pl.Expr, bool], ...]  # (sort expression, descending), trace_id last
    time_range: tuple[int | None, int | None]  # epoch us, [start, end)
    days: tuple[dt.date | None, dt.date | None]
    fingerprint: str
    reads_cost: bool = False  # trace.cost in the filter or an order key: trace_costs joins before them


@dataclass(frozen=True)
class _Cursor:
    trace_version: int
    span_version: int | None
    after: list[Any]
    assessment_version: int | None = None
    cost_version: int | None = None


# --- arguments --------------------------------------------------------------------------


def _time_us(value: TimeArg, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        when = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return (when - _EPOCH) // dt.timedelta(microseconds=1)
    if isinstance(value, dt.date):
        return (value - _EPOCH.date()).days * 86_400_000_000
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return parse_time_us(Literal(value, 0), name)
    raise FilterError(f"{name} must be a datetime, a date, epoch milliseconds or an ISO-8601 string, not {value!r}")


def _day(us: int) -> dt.date:
    return (_EPOCH + dt.timedelta(microseconds=us)).date()


Days = tuple[dt.date | None, dt.date | None]


def _narrow(days: Days, time_range: tuple[int | None, int | None]) -> Days:
    lo, hi = days
    start, end = time_range
    if start is not None:
        lo = max(lo, _day(start)) if lo else _day(start)
    if end is not None:  # end is exclusive: a midnight end does not reach that day
        hi = min(hi, _day(end - 1)) if hi else _day(end - 1)
    return lo, hi


def _build_query(
    filter_string: str | None, order_by: Sequence[str] | None, start_time: TimeArg, end_time: TimeArg
) -> _Query:
    if isinstance(order_by, str):
        raise FilterError("order_by takes a list of keys, e.g. ['timestamp_ms DESC']")
    compiled = compile_filter(filter_string)
    order = tuple(order_by) if order_by else DEFAULT_ORDER
    keys = [order_key(item)[1:] for item in order]
    keys.append((pl.col("trace_id"), False))  # unique tie-breaker: a total, repeatable order
    time_range = (_time_us(start_time, "start_time"), _time_us(end_time, "end_time"))
    identity = json.dumps([filter_string or "", list(order), list(time_range)])
    fingerprint = hashlib.sha256(identity.encode()).hexdigest()[:16]
    reads_cost = compiled.reads_cost or any(COST_COLUMN in e.meta.root_names() for e, _ in keys)
    return _Query(compiled, tuple(keys), time_range, _narrow(compiled.days, time_range), fingerprint, reads_cost)


# --- page tokens ------------------------------------------------------------------------


def _encode_token(
    query: _Query, trace_version: int, span_version: int | None, after: list[Any], assessment_version: int | None,
    cost_version: int,
) -> str:  # fmt: skip
    payload = {"v": TOKEN_VERSION, "q": query.fingerprint, "t": trace_version, "s": span_version, "k": after}
    if assessment_version is not None:
        payload["a"] = assessment_version
    payload["c"] = cost_version
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_token(token: str, query: _Query) -> _Cursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        assessed, costed = payload.get("a"), payload.get("c")
        cursor = _Cursor(
            int(payload["t"]),
            None if payload["s"] is None else int(payload["s"]),
            list(payload["k"]),
            None if assessed is None else int(assessed),
            None if costed is None else int(costed),
        )
        version = payload["v"]
    except (binascii.Error, ValueError, UnicodeDecodeError, KeyError, TypeError):
        raise FilterError("invalid page token: pass the next_page_token of a previous search unchanged") from None
    scalars = all(v is None or isinstance(v, (int, float, str)) for v in cursor.after)
    if version != TOKEN_VERSION or len(cursor.after) != len(query.keys) or not scalars:
        raise FilterError("invalid page token: it was made by a different spanlake version or search")
    if payload["q"] != query.fingerprint:
        raise FilterError("page token belongs to a different search: filter, order_by and time range must not change")
    return cursor


# --- plan -------------------------------------------------------------------------------


def _day_filter(days: tuple[dt.date | None, dt.date | None]) -> list[pl.Expr]:
    lo, hi = days
    out = [pl.col("day") >= pl.lit(lo)] if lo else []
    return out + ([pl.col("day") <= pl.lit(hi)] if hi else [])


def _span_days(table: DeltaTable, days: Days) -> Days:
    """The days the spans of traces whose `day` is within `days` can start on: from that day to
    the day of the latest end_time of those rows (a trace may last days), from the Delta log's
    file statistics; no upper bound where a file has none."""
    lo, hi = days
    if hi is None:
        return days
    files = pa.table(table.get_add_actions(flatten=True))
    if "max.end_time" not in files.column_names or "partition.day" not in files.column_names:
        return lo, None
    stats = pl.DataFrame(files.select(["partition.day", "max.end_time"])).filter(
        pl.col("partition.day").is_between(lo or dt.date.min, hi)
    )
    if stats.is_empty():
        return lo, hi
    if stats["max.end_time"].null_count():
        return lo, None
    latest: dt.datetime = stats["max.end_time"].max()  # type: ignore[assignment]
    return lo, max(hi, latest.date())


def _filtered(
    query: _Query,
    traces: pl.LazyFrame,
    spans: pl.LazyFrame | None,
    table: DeltaTable,
    days: Days | None = None,
    assessments: pl.LazyFrame | None = None,
    costs: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """trace_info rows matching the query; explicit `day` bounds let Delta prune partitions.
    `days` narrows the query's own day bounds (one step of a day-by-day walk); `table` is the
    trace_info table `traces` reads; `assessments` the assessments rows (for feedback. and
    expectation. clauses); `costs` the trace_costs rows, joined as COST_COLUMN when the query
    reads trace.cost (the column stays, for the sort)."""
    days = query.days if days is None else days
    start, end = query.time_range
    preds = _day_filter(days)
    preds += [pl.col("request_time") >= pl.lit(_EPOCH + dt.timedelta(microseconds=start))] if start is not None else []
    preds += [pl.col("request_time") < pl.lit(_EPOCH + dt.timedelta(microseconds=end))] if end is not None else []
    lf = traces.filter(*preds) if preds else traces
    span_preds = query.compiled.span_predicates
    if span_preds:
        assert spans is not None
        # A trace's spans start at or after its request_time (a start bound carries over as is)
        # and by its end_time, which can be days later.
        span_filter = [*_day_filter(_span_days(table, days)), any_of(span_preds)]
        if start is not None:
            span_filter.append(pl.col("start_time") >= pl.lit(_EPOCH + dt.timedelta(microseconds=start)))
        matched = (
            spans.filter(*span_filter)
            .group_by("trace_id")
            .agg([p.any().alias(SPAN_MATCH.format(i)) for i, p in enumerate(span_preds)])
        )
        required = query.compiled.span_required
        if required is not None:  # traces without such span matches cannot match: no need to join them
            matched = matched.filter(required)
        lf = lf.join(matched, on="trace_id", how="left" if required is None else "inner").with_columns(
            pl.col(SPAN_MATCH.format(i)).fill_null(False) for i in range(len(span_preds))
        )
    if query.compiled.assessment_predicates:
        assert assessments is not None
        lf = _join_assessment_matches(lf, query.compiled, assessments, days[0])
    if query.reads_cost:
        assert costs is not None
        lf = with_trace_cost(lf, costs, _day_filter(days))
    lf = lf.filter(query.compiled.predicate) if query.compiled.predicate is not None else lf
    n_assessed = len(query.compiled.assessment_predicates)
    return lf.drop(
        *(SPAN_MATCH.format(i) for i in range(len(span_preds))), *(ASSESSMENT_MATCH.format(i) for i in range(n_assessed))
    )


def _join_assessment_matches(
    lf: pl.LazyFrame, compiled: CompiledFilter, assessments: pl.LazyFrame, first_day: dt.date | None
) -> pl.LazyFrame:
    """`lf` with the ASSESSMENT_MATCH columns: per trace, whether some valid assessment row
    satisfies each predicate. Validity is resolved over every row from the first trace day on
    (an override is written after what it replaces, so both are in range) before any predicate
    applies: a human override replacing a judge's "no" with "yes" makes `= 'no'` miss that trace."""
    preds = compiled.assessment_predicates
    valid = with_validity(assessments.filter(*assessments_since(first_day))).filter(pl.col("valid"))
    matched = (
        valid.filter(any_of(preds))
        .group_by("trace_id")
        .agg([p.any().alias(ASSESSMENT_MATCH.format(i)) for i, p in enumerate(preds)])
    )
    required = compiled.assessment_required
    if required is not None:  # traces without such rows cannot match: join only the ones that have them
        matched = matched.filter(required)
    return lf.join(matched, on="trace_id", how="left" if required is None else "inner").with_columns(
        pl.col(ASSESSMENT_MATCH.format(i)).fill_null(False) for i in range(len(preds))
    )


def _after(schema: pl.Schema, query: _Query, values: list[Any]) -> pl.Expr:
    """Rows strictly after the cursor in the (keys, nulls last) order: lexicographic keyset."""
    clauses: list[pl.Expr] = []
    equal_so_far: list[pl.Expr] = []
    for i, ((_, descending), value) in enumerate(zip(query.keys, values)):
        col = pl.col(_KEY.format(i))
        if value is None:  # nothing sorts after null in a nulls-last key; ties continue
            equal_so_far.append(col.is_null())
            continue
        lit = pl.lit(value).cast(schema[_KEY.format(i)], strict=False)  # a tampered value: null, not a crash
        later = col.is_null() | (col < lit if descending else col > lit)
        clauses.append(functools.reduce(operator.and_, [*equal_so_far, later]))
        equal_so_far.append(col == lit)
    return functools.reduce(operator.or_, clauses) if clauses else pl.lit(False)


def _cursor_values(last: pl.DataFrame, n_keys: int) -> list[Any]:
    # Times and dates travel as their integer physical value: exact, and JSON-safe.
    row = last.select(pl.col(_KEY.format(i)).to_physical() for i in range(n_keys)).row(0)
    return list(row)


def trace_id_in(ids: Sequence[str], max_terms: int = 128) -> pl.Expr:
    """`trace_id` is one of `ids`, written so that min/max statistics prune: Polars skips files
    and row groups for an OR of equalities or ranges, but not for `is_in`. span_data is sorted
    by trace_id, so a page's ids touch one row group per day each. Beyond `max_terms` ids, the
    sorted ids are cut into `max_terms` ranges (pruning) under an exact `is_in`."""
    unique = sorted(set(ids))
    col = pl.col("trace_id")
    if not unique:
        return pl.lit(False)
    if len(unique) <= max_terms:
        return functools.reduce(operator.or_, [col == pl.lit(i, dtype=pl.String) for i in unique])
    step = -(-len(unique) // max_terms)
    chunks = (unique[i : i + step] for i in range(0, len(unique), step))
    ranges = [col.is_between(pl.lit(c[0], dtype=pl.String), pl.lit(c[-1], dtype=pl.String)) for c in chunks]
    return col.is_in(pl.Series(unique, dtype=pl.String).implode()) & functools.reduce(operator.or_, ranges)


def _with_spans(traces: pl.LazyFrame, spans: pl.LazyFrame) -> pl.LazyFrame:
    """Add `spans`: each trace's span_data rows (structs without trace_id) by start_time. `spans`
    may hold other traces' rows too; callers narrow it for speed."""
    dtype = pl.List(pl.Struct({k: v for k, v in spans.collect_schema().items() if k != "trace_id"}))
    grouped = spans.group_by("trace_id").agg(
        pl.struct(pl.exclude("trace_id")).sort_by("start_time", "span_id").alias("spans")
    )
    joined = traces.join(grouped, on="trace_id", how="left", maintain_order="left")
    return joined.with_columns(pl.col("spans").fill_null(pl.lit([], dtype=dtype)))


def spans_of(frame: pl.DataFrame, spans: pl.LazyFrame) -> pl.LazyFrame:
    """The span_data rows of the traces in `frame` (trace_info rows: trace_id, day, end_time), read
    with pruning: a trace's spans start on its day or later, and by its end_time (plus a day of
    clock skew); its trace ids prune by file and row-group statistics."""
    if frame.is_empty():
        return spans.head(0)
    first_day: dt.date = frame["day"].min()  # type: ignore[assignment]
    last_day: dt.date = frame["day"].max()  # type: ignore[assignment]
    last_end: dt.datetime | None = frame["end_time"].max()  # type: ignore[assignment]
    hi = max(last_day, last_end.date() if last_end else last_day)
    return spans.filter(pl.col("day").is_between(first_day, hi + _ONE_DAY), trace_id_in(frame["trace_id"].to_list()))


def _attach_spans(frame: pl.DataFrame, spans: pl.LazyFrame) -> pl.DataFrame:
    """`_with_spans` for a page: its trace ids and days prune the span_data read."""
    return _with_spans(frame.lazy(), spans_of(frame, spans)).collect()


def _walk_direction(query: _Query) -> bool | None:
    """Whether the order walks time backwards (True) or forwards (False), when its first key is
    request_time or day, else None. Partition `day` is date(request_time), so every row of a
    later day sorts after (or before) every row of an earlier one: a search can read a few days
    at a time, newest first, and stop once it holds a page."""
    expr, descending = query.keys[0]
    if expr.meta.is_column() and expr.meta.output_name() in ("request_time", "day"):
        return descending
    return None


def _walk_windows(query: _Query, table: DeltaTable, cursor: _Cursor | None, descending: bool) -> list[Days] | None:
    """Day ranges to read one after another: the table's day partitions within the query's
    bounds (and on the cursor's side of the page boundary), in sort order, in windows of 1, 1,
    2, 4, ... days, so a rare filter over a long range costs log2(days) scans, not one per day.
    None when the table is not partitioned by a non-null day (then: one scan)."""
    lo, hi = query.days
    name = query.keys[0][0].meta.output_name()
    if cursor is not None and cursor.after[0] is not None:
        try:  # the cursor's first key, as its physical value: epoch us or epoch days
            value = int(cursor.after[0])
            cut = _day(value) if name == "request_time" else _EPOCH.date() + dt.timedelta(days=value)
        except (TypeError, ValueError, OverflowError):
            cut = None  # a tampered token: the keyset filter still applies
        if cut is not None and descending:
            hi = min(hi, cut) if hi else cut
        elif cut is not None:
            lo = max(lo, cut) if lo else cut
    values = {part.get("day") for part in table.partitions()}
    if None in values:
        return None
    stored = (dt.date.fromisoformat(v) for v in values if v is not None)
    days = sorted(d for d in stored if (lo is None or d >= lo) and (hi is None or d <= hi))
    if descending:
        days.reverse()
    windows: list[Days] = []
    i, size = 0, 1
    while i < len(days):
        chunk = days[i : i + size]
        windows.append((min(chunk), max(chunk)))
        i += size
        size = size if len(windows) == 1 else size * 2
    return windows


def _top_keys(query: _Query, lf: pl.LazyFrame, cursor: _Cursor | None, limit: int) -> pl.DataFrame:
    """Pass 1: the sort keys (trace_id last), request_time and day of the first `limit` rows.
    Only the key and filter columns are read, never the wide ones (maps, previews)."""
    lf = lf.with_columns(e.alias(_KEY.format(i)) for i, (e, _) in enumerate(query.keys))
    if cursor is not None:
        lf = lf.filter(_after(lf.collect_schema(), query, cursor.after))
    key_names = [_KEY.format(i) for i in range(len(query.keys))]
    plan = (
        lf.sort(key_names, descending=[d for _, d in query.keys], nulls_last=True)
        .head(limit)
        .select(*key_names, "request_time", "day")
    )
    return plan.collect() if limit > 0 else pl.DataFrame(schema=plan.collect_schema())


def _page_rows(traces: pl.LazyFrame, top: pl.DataFrame, trace_id_key: str) -> pl.DataFrame:
    """Pass 2: the full trace_info rows of `top`, in its order. The rows' own day and
    request_time bounds reach the scan, so file and row-group statistics skip the rest."""
    columns = TRACE_INFO.column_names
    if top.is_empty():
        return pl.DataFrame(schema=traces.select(columns).collect_schema())
    ids = top[trace_id_key]
    rows = (
        traces.filter(
            pl.col("day").is_between(top["day"].min(), top["day"].max()),
            pl.col("request_time").is_between(top["request_time"].min(), top["request_time"].max()),
            pl.col("trace_id").is_in(ids.implode()),
        )
        .select(columns)
        .collect()
        .unique(subset=["trace_id", "request_time", "day"], keep="first", maintain_order=True)
    )
    wanted = top.select(pl.col(trace_id_key).alias("trace_id"), "request_time", "day")
    return wanted.join(rows, on=["trace_id", "request_time", "day"], how="left", maintain_order="left").select(
        columns
    )


def search_traces(
    filter_string: str | None = None,
    *,
    order_by: Sequence[str] | None = None,
    max_results: int = 100,
    page_token: str | None = None,
    start_time: TimeArg = None,
    end_time: TimeArg = None,
    include_spans: bool = False,
    warehouse: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> TracePage:
    """One page of traces (trace_info rows) matching `filter_string`, newest first by default.

    `order_by` items are `"<field> [ASC|DESC]"` with filter field names; trace_id breaks ties.
    `start_time` / `end_time` (datetime, epoch ms or ISO string) bound request_time as
    [start, end). Pass the returned `next_page_token` back, with the same filter, order and
    time range, for the next page. `include_spans` adds a `spans` list-of-structs column. Each
    row also holds `cost_usd`, the trace's cost from the cost job's trace_costs (null when unpriced
    or not costed yet); filtering or ordering by `trace.cost` needs that table.
    """
    if max_results < 1:
        raise FilterError(f"max_results must be at least 1, not {max_results}")
    warehouse, options = warehouse_location(warehouse, storage_options)
    query = _build_query(filter_string, order_by, start_time, end_time)
    cursor = _decode_token(page_token, query) if page_token else None
    trace_table, traces = open_delta("trace_info", warehouse, options, cursor.trace_version if cursor else None)
    trace_version = trace_table.version()
    span_version, spans = None, None
    if query.compiled.span_predicates or include_spans:
        pinned = cursor.span_version if cursor else None
        span_version, spans = open_table("span_data", warehouse, options, pinned)
    assessment_version, assessments = None, None
    if query.compiled.assessment_predicates:
        pinned = cursor.assessment_version if cursor else None
        assessment_version, assessments = open_if_exists("assessments", warehouse, options, pinned)
    # Always: the page shows each trace's cost, from the version the first page read.
    cost_version, costs = open_if_exists("trace_costs", warehouse, options, cursor.cost_version if cursor else None)
    if query.reads_cost:
        require_costs(cost_version, warehouse)

    limit = max_results + 1  # one extra row says whether another page exists
    descending = _walk_direction(query)
    windows = _walk_windows(query, trace_table, cursor, descending) if descending is not None else None
    everything = _filtered(query, traces, spans, trace_table, assessments=assessments, costs=costs)
    if windows is None:
        top = _top_keys(query, everything, cursor, limit)
    else:  # a few days at a time, in sort order, until the page is full
        found = [_top_keys(query, everything, cursor, 0)]  # no rows: the schema
        for window in windows:
            window_rows = _filtered(query, traces, spans, trace_table, window, assessments, costs)
            found.append(_top_keys(query, window_rows, cursor, limit))
            limit -= found[-1].height
            if limit <= 0:
                break
        top = pl.concat(found)
    key_names = [_KEY.format(i) for i in range(len(query.keys))]
    token = None
    if top.height > max_results:
        top = top.head(max_results)
        after = _cursor_values(top.tail(1), len(key_names))
        token = _encode_token(query, trace_version, span_version, after, assessment_version, cost_version)
    frame = _page_rows(traces, top, key_names[-1])
    frame = with_page_costs(frame, costs, cost_version)
    if include_spans:
        assert spans is not None
        frame = _attach_spans(frame, spans)
    return TracePage(frame, token)


def scan_traces(
    filter_string: str | None = None,
    *,
    start_time: TimeArg = None,
    end_time: TimeArg = None,
    include_spans: bool = False,
    warehouse: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> pl.LazyFrame:
    """The trace_info rows matching `filter_string` whose request_time is in [start_time, end_time),
    as a LazyFrame over the tables' latest versions: the read layer's one way to select traces, for
    search, counts, scorers, monitors and dashboard pages. Nothing is read until it is collected;
    the filter's day and time bounds reach the Delta scan, so add `.select`, `.group_by`, `.sort`
    as needed before collecting. `include_spans` adds `spans`, each trace's span_data rows (a list
    of structs by start_time), which reads span_data from the first day on: narrow the range.
    Raises FilterError for a bad filter, TableError for a missing table.
    """
    warehouse, options = warehouse_location(warehouse, storage_options)
    query = _build_query(filter_string, None, start_time, end_time)
    table, traces = open_delta("trace_info", warehouse, options)
    spans = None
    if query.compiled.span_predicates or include_spans:
        spans = open_table("span_data", warehouse, options)[1]
    assessments, costs = None, None
    if query.compiled.assessment_predicates:
        assessments = open_if_exists("assessments", warehouse, options)[1]
    if query.reads_cost:
        cost_version, costs = open_if_exists("trace_costs", warehouse, options)
        require_costs(cost_version, warehouse)
    selected = _filtered(query, traces, spans, table, assessments=assessments, costs=costs)
    if query.reads_cost:  # the selection is trace_info rows; search pages add the cost
        selected = selected.drop(COST_COLUMN)
    if not include_spans:
        return selected
    assert spans is not None
    lo = query.days[0]  # a trace's spans start on its day or later
    mine = spans.filter(pl.col("day") >= pl.lit(lo)) if lo else spans
    return _with_spans(selected, mine.join(selected.select("trace_id"), on="trace_id", how="semi"))


def count_traces(
    filter_string: str | None = None,
    *,
    start_time: TimeArg = None,
    end_time: TimeArg = None,
    warehouse: str | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> int:
    """How many traces match (same filter and time range as `search_traces`), at the latest version."""
    selected = scan_traces(
        filter_string, start_time=start_time, end_time=end_time, warehouse=warehouse, storage_options=storage_options
    )
    return int(selected.select(pl.len()).collect().item())
