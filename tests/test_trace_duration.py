"""One trace_info row per trace whatever its duration and the order its spans arrive in, with
token totals equal to a from-scratch computation over all its spans: through a real broker,
`SpanIngestor` / `spanlake ingest` and Delta, and search and get_trace agreeing with the row.

The trace used throughout lasts three days (its root runs from T0 to T0 + 3 days) and holds a
framework LLM span around the SDK's chat span (one call: only the inner one counts), a wrapper
whose inner call reports no usage (the wrapper counts), a tool call and a late embedding call.
"""

from __future__ import annotations

import datetime as dt
import shutil
import signal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from support import create_topic, ingest, ingest_subprocess, read, send_raw
from test_ingest_bad_input import request
from test_ingest_bad_input import span as proto_span

from spanlake.ingest.trace_rollup import ranges
from spanlake.query import count_traces, get_trace, search_traces
from spanlake.settings import Settings
from spanlake.tables.tokens import TOKEN_COLUMNS, counts_tokens, token_totals

T0 = 1_764_000_000 * 10**9  # 2025-11-24 16:00 UTC
HOUR = 3_600 * 10**9
DAY = 24 * HOUR
TRACE_ID = 0x5EED_0000_0000_0000_0000_0000_0000_0001
TRACE = f"{TRACE_ID:032x}"
WRAPPER = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o", "llm.token_count.prompt": 100,
           "llm.token_count.completion": 20}  # fmt: skip
CHAT = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 20}  # fmt: skip
# span id -> (parent, start, end, attributes)
SPANS: dict[int, tuple[int, int, int, dict]] = {
    1: (0, T0, T0 + 3 * DAY, {"input.value": "plan the migration"}),  # the root: three days
    2: (1, T0 + HOUR, T0 + HOUR + 10**10, WRAPPER),  # framework LLM span around ...
    3: (2, T0 + HOUR + 10**9, T0 + HOUR + 9 * 10**9, CHAT),  # ... the SDK's span: one call
    4: (1, T0 + DAY + HOUR, T0 + DAY + 2 * HOUR, {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "t"}),
    5: (1, T0 + 2 * DAY, T0 + 2 * DAY + 10**10, {**WRAPPER, "llm.token_count.prompt": 50,
                                                 "llm.token_count.completion": 5}),  # fmt: skip
    6: (5, T0 + 2 * DAY + 10**9, T0 + 2 * DAY + 5 * 10**9, {"gen_ai.operation.name": "chat",
                                                            "gen_ai.request.model": "gpt-4o"}),  # no usage
    7: (1, T0 + 3 * DAY - HOUR, T0 + 3 * DAY - HOUR + 10**9,
        {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "e5", "gen_ai.usage.input_tokens": 8}),
}  # fmt: skip
# By hand: 3 counts (2 wraps it), 5 counts (its inner call reports nothing), 7 counts.
EXPECTED = {"span_count": 7, "llm_call_count": 5, "state": "OK", "root_span_name": "span-1",
            "input_tokens": 158, "output_tokens": 25, "total_tokens": 183}  # fmt: skip


def span(span_id: int, trace: int = TRACE_ID) -> Span:
    parent, start, end, attrs = SPANS[span_id]
    return proto_span(trace, span_id, parent=parent, start=start, end=end, **attrs)


def message(*span_ids: int, trace: int = TRACE_ID) -> bytes:
    return request(*(span(i, trace) for i in span_ids), service="planner").SerializeToString()


def utc(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns // 1000 / 1e6, dt.UTC)


def assert_one_row(settings: Settings, span_ids: set[int], trace: str = TRACE) -> dict:
    """trace_info holds exactly one row for `trace`, whose facts match its stored spans."""
    traces = read(settings, "trace_info").filter(pl.col("trace_id") == trace)
    assert traces.height == 1, traces.select("trace_id", "state", "request_time", "span_count")
    row = traces.row(0, named=True)
    spans = read(settings, "span_data").filter(pl.col("trace_id") == trace)
    assert sorted(spans["span_id"]) == sorted(f"{i:016x}" for i in span_ids)
    assert row["span_count"] == len(span_ids)
    assert row["request_time"] == utc(min(SPANS[i][1] for i in span_ids))
    assert row["end_time"] == utc(max(SPANS[i][2] for i in span_ids))
    assert row["day"] == row["request_time"].date()
    assert row["state"] == ("OK" if 1 in span_ids else "IN_PROGRESS")
    scratch = token_totals(spans).row(0, named=True)  # from scratch over every stored span
    assert {c: row[c] for c in TOKEN_COLUMNS} == {c: scratch[c] for c in TOKEN_COLUMNS}
    listed = read(settings, "open_traces").filter(pl.col("trace_id") == trace)
    assert listed["request_time"].to_list() == ([] if 1 in span_ids else [row["request_time"]])
    return row


def assert_readers_agree(settings: Settings, row: dict, traces: int = 1) -> None:
    """search and get_trace see the one row (of each of `traces` traces alike), from any day."""
    wh = settings.warehouse
    first_day = row["request_time"].replace(hour=0, minute=0, second=0, microsecond=0)
    one_day = {"start_time": first_day, "end_time": first_day + dt.timedelta(days=1), "warehouse": wh}
    assert count_traces(**one_day) == traces
    page = search_traces(**one_day, include_spans=True)
    assert page.height == traces and {len(s) for s in page["spans"]} == {row["span_count"]}
    stored = set(read(settings, "span_data").filter(pl.col("trace_id") == row["trace_id"])["span_id"])
    last = max((i for i in SPANS if f"{i:016x}" in stored), key=lambda i: SPANS[i][1])
    # a span clause on the trace's last span, days after the trace's day
    assert search_traces(f"span.name = 'span-{last}'", **one_day).height == traces
    trace = get_trace(row["trace_id"], warehouse=wh)
    assert trace.info == row
    assert len(trace.spans) == row["span_count"]


def test_a_three_day_root_then_a_child_two_days_later_is_one_row(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    send_raw(settings, [message(1)])  # the root, lasting three days, ...
    ingest(settings)
    send_raw(settings, [message(5)])  # ... then, in a later batch, a child two days after its start
    ingest(settings)
    row = assert_one_row(settings, {1, 5})
    assert row["input_tokens"] == 50
    assert_readers_agree(settings, row)


def test_children_days_apart_before_their_root_wait_in_open_traces_then_fold_into_one_row(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    for batch in ([7], [4], [2, 3], [1]):  # children days apart, latest first; the root days before them
        send_raw(settings, [message(*batch)])
        ingest(settings)
    row = assert_one_row(settings, {1, 2, 3, 4, 7})
    assert_readers_agree(settings, row)


def test_token_totals_count_a_wrapper_and_its_inner_call_once_across_batches(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    settings = settings.model_copy(update={"flush_spans": 1})  # one message, one batch
    # the wrapper before its inner call (it stops counting), and after it (it never counts)
    send_raw(settings, [message(1), message(2), message(3), message(6), message(5), message(4, 7)])
    ingest(settings)
    row = assert_one_row(settings, set(SPANS))
    assert {k: row[k] for k in EXPECTED} == EXPECTED


SPLIT = st.tuples(st.permutations(sorted(SPANS)), st.lists(st.booleans(), min_size=6, max_size=6))


@given(splits=st.lists(SPLIT, min_size=4, max_size=4))
@hypothesis_settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_split_and_order_gives_one_row_with_the_from_scratch_totals(
    settings: Settings, tmp_path: Path, splits: list[tuple[list[int], list[bool]]]
) -> None:
    """Each example: four copies of the trace (own ids), each split and ordered its own way, their
    messages interleaved on one partition, one batch per message."""
    example = tmp_path / f"example-{len(list(tmp_path.iterdir()))}"
    settings = settings.model_copy(update={"warehouse": str(example), "topic": example.name + settings.topic,
                                           "group": example.name + settings.group, "flush_spans": 1})  # fmt: skip
    streams = []
    for k, (order, cuts) in enumerate(splits):
        batches: list[list[int]] = [[order[0]]]
        for span_id, cut in zip(order[1:], cuts, strict=True):
            batches.append([span_id]) if cut else batches[-1].append(span_id)
        streams.append([message(*b, trace=TRACE_ID + k) for b in batches])
    interleaved = [stream[i] for i in range(len(SPANS)) for stream in streams if i < len(stream)]
    create_topic(settings, partitions=1)
    send_raw(settings, interleaved)
    ingest(settings)
    for k in range(len(splits)):
        row = assert_one_row(settings, set(SPANS), f"{TRACE_ID + k:032x}")
        assert {key: row[key] for key in EXPECTED} == EXPECTED
    assert_readers_agree(settings, row, traces=len(splits))


@pytest.mark.parametrize("crash_at", ["after_span_data", "after_trace_info", "after_open_traces"])
def test_a_crash_mid_batch_neither_duplicates_the_row_nor_miscounts_tokens(settings: Settings, crash_at: str) -> None:
    create_topic(settings, partitions=1)
    send_raw(settings, [message(7), message(3), message(2), message(6, 5), message(1, 4)])
    crashed = ingest_subprocess(settings.model_copy(update={"flush_spans": 2}), crash_at=crash_at)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    finished = ingest_subprocess(settings.model_copy(update={"flush_spans": 1}))
    assert finished.returncode == 0, finished.stderr[-2000:]
    row = assert_one_row(settings, set(SPANS))
    assert {k: row[k] for k in EXPECTED} == EXPECTED


def test_a_warehouse_written_before_open_traces_existed_is_adopted(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    send_raw(settings, [message(7)])
    ingest(settings)
    shutil.rmtree(Path(settings.warehouse) / "open_traces")  # as an earlier spanlake left it
    send_raw(settings, [message(4), message(1)])  # a child days before the waiting one, then the root
    ingest(settings)
    assert_one_row(settings, {1, 4, 7})


# --- units ---------------------------------------------------------------------------------


def test_ranges_join_close_points_and_keep_the_widest_gaps() -> None:
    t = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=m) for m in (0, 1, 30, 31, 90, 200)]
    assert ranges([(x, x) for x in t], gap=dt.timedelta(minutes=2)) == [(t[0], t[1]), (t[2], t[3]), (t[4], t[4]),
                                                                         (t[5], t[5])]  # fmt: skip
    assert ranges([(x, x) for x in t], gap=dt.timedelta(0), limit=2) == [(t[0], t[4]), (t[5], t[5])]
    assert ranges([(t[0], t[3]), (t[1], t[2])]) == [(t[0], t[3])]


def test_the_counting_rule_and_its_null_totals() -> None:
    spans = pl.DataFrame(
        {"trace_id": ["a"] * 4 + ["b"], "span_id": ["1", "2", "3", "4", "1"],
         "parent_span_id": [None, "1", "2", "1", None],
         "span_type": ["LLM", "CHAT_MODEL", "CHAT_MODEL", "CHAT_MODEL", "LLM"],
         "input_tokens": [10, None, 7, None, None], "output_tokens": [1, 5, None, None, None],
         "total_tokens": [11, 5, 7, None, None]},
        schema_overrides={"input_tokens": pl.Int64, "output_tokens": pl.Int64, "total_tokens": pl.Int64},
    )  # fmt: skip
    # 1 wraps 2 (reports), 2 wraps 3 (reports), 4 reports nothing; trace b reports nothing
    assert counts_tokens(spans).to_list() == [False, False, True, True, True]
    totals = {r["trace_id"]: r for r in token_totals(spans).iter_rows(named=True)}
    # input: only 3 counts; output: 3 reports none, but 1 and 2 do, so 0 rather than null
    assert (totals["a"]["input_tokens"], totals["a"]["output_tokens"], totals["a"]["total_tokens"]) == (7, 0, 7)
    assert (totals["b"]["input_tokens"], totals["b"]["output_tokens"]) == (None, None)
