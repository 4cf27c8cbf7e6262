"""search_traces / count_traces / get_trace over real Delta tables written under tmp_path (and
trace_costs written by the real cost job over them): paging (also with a concurrent writer
between pages), span filters, trace.cost, include_spans, trace trees, and a hypothesis property
test against a plain-Python oracle.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

import polars as pl
import pyarrow as pa
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable, write_deltalake
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from spanlake.errors import FilterError, SpanlakeError, TableError
from spanlake.jobs.costs import run_costs
from spanlake.query import TracePage, count_traces, get_trace, scan_traces, search_traces
from spanlake.query.traces import TraceNotFoundError
from spanlake.tables.schemas import ASSESSMENTS, SPAN_DATA, TRACE_INFO

BASE = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
UTC = dt.timezone.utc

# --- a seeded generator of random traces ------------------------------------------------


def _hex(rnd: random.Random, n: int) -> str:
    return "".join(rnd.choice("0123456789abcdef") for _ in range(n))


def make_span(
    rnd: random.Random, trace_id: str, parent: str | None, start: dt.datetime, **over: Any
) -> dict[str, Any]:
    duration = rnd.randint(1, 5_000_000)
    kind = rnd.choice(["LLM", "TOOL", "RETRIEVER", "CHAIN"])
    tokens = rnd.randint(1, 3000) if kind == "LLM" else None
    row: dict[str, Any] = {c: None for c in SPAN_DATA.column_names}
    row.update(
        trace_id=trace_id, span_id=_hex(rnd, 16), parent_span_id=parent,
        name=rnd.choice(["agent", "llm.call", "retrieve", "tool:search"]), span_kind="INTERNAL",
        span_type=kind, start_time=start, end_time=start + dt.timedelta(microseconds=duration),
        duration_ms=duration / 1000, status_code=rnd.choice(["OK", "OK", "ERROR", "UNSET"]),
        # an LLM span's usage prices it; one in five names a model no price list knows (unpriced)
        model=None if tokens is None else "gpt-4o" if tokens % 5 else "in-house-llm", total_tokens=tokens,
        input_tokens=tokens, output_tokens=None if tokens is None else tokens // 10,
        inputs=rnd.choice(["What is Delta?", "weather in Paris", None]), outputs=rnd.choice(["Sunny", "A table format", None]),
        attributes=json.dumps({"gen_ai.usage.input_tokens": tokens, "gen_ai.system": rnd.choice(["openai", "anthropic"]),
                               "retries": rnd.randint(0, 3)}),
        resource_attributes="{}", topic="otlp_spans", partition=0, offset=rnd.randint(0, 10**6),
        ingested_at=BASE, day=start.date(),
    )  # fmt: skip
    row.update(over)
    return row


def make_trace(
    rnd: random.Random, start: dt.datetime, n_spans: int | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A trace_info row and its span_data rows: a root plus children (some start a day later)."""
    trace_id = _hex(rnd, 32)
    root = make_span(rnd, trace_id, None, start, span_type="AGENT", name="agent")
    spans = [root]
    for _ in range(n_spans if n_spans is not None else rnd.randint(0, 4)):
        parent = rnd.choice(spans)["span_id"]
        offset = dt.timedelta(hours=rnd.choice([0, 0, 0, 20]), microseconds=rnd.randint(0, 10**7))
        spans.append(make_span(rnd, trace_id, parent, start + offset))
    end = max(s["end_time"] for s in spans)
    tokens = [s["total_tokens"] for s in spans if s["total_tokens"] is not None]
    info: dict[str, Any] = dict(
        trace_id=trace_id, request_time=start, end_time=end, duration_ms=(end - start) / dt.timedelta(milliseconds=1),
        state=rnd.choice(["OK", "OK", "ERROR", "IN_PROGRESS"]), root_span_id=root["span_id"], root_span_name="agent",
        service_name=rnd.choice(["checkout", "search", "chat", None]), environment=rnd.choice(["prod", "staging", None]),
        user_id=rnd.choice(["u1", "u2", None]), session_id=None, span_count=len(spans),
        error_count=sum(s["status_code"] == "ERROR" for s in spans),
        llm_call_count=sum(s["span_type"] == "LLM" for s in spans),
        input_tokens=None, output_tokens=None, total_tokens=sum(tokens) if tokens else None,
        models=["gpt-4o"] if tokens else [], request_preview=rnd.choice(["Hello World", "what is DELTA lake?", None]),
        response_preview=rnd.choice(["Delta Lake is a table format", "hi", None]),
        tags=rnd.choice([{"env": "prod", "mlflow.user": "alice"}, {"env": "dev"}, {}, None]),
        metadata={"mlflow.trace.user": rnd.choice(["u1", "u2"])}, ingested_at=BASE, day=start.date(),
    )  # fmt: skip
    return info, spans


def random_traces(seed: int, n: int, *, days: int = 3, ties: bool = True) -> tuple[list[dict], list[dict]]:
    rnd = random.Random(seed)
    infos, spans = [], []
    for _ in range(n):
        if ties and infos and rnd.random() < 0.15:  # equal request_times exercise the tie-breaker
            start = rnd.choice(infos)["request_time"]
        else:
            start = BASE + dt.timedelta(microseconds=rnd.randint(0, days * 86_400 * 10**6))
        info, trace_spans = make_trace(rnd, start)
        infos.append(info)
        spans += trace_spans
    return infos, spans


def _arrow(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    cols = {f.name: [r[f.name] for r in rows] for f in schema}
    for name in ("tags", "metadata"):  # Arrow maps take lists of (key, value) pairs
        if name in cols:
            cols[name] = [None if m is None else list(m.items()) for m in cols[name]]
    return pa.Table.from_pydict(cols, schema=schema)


def random_assessments(seed: int, infos: list[dict]) -> list[dict]:
    """Feedback rows for most traces (a yes/no verdict, a score, a bool, some errors), and human
    overrides of some of them: of the verdict, of an override (a chain), or twice of one row."""
    rnd = random.Random(seed)
    rows: list[dict] = []
    for info in infos:
        mine: list[dict] = []
        for i in range(rnd.randint(0, 4)):
            name, kind, value = rnd.choice([("correctness", "string", rnd.choice(["yes", "no"])),
                                            ("score", "number", rnd.randint(0, 10) / 10), ("ok", "bool", rnd.random() < 0.5),
                                            ("score", None, None)])  # fmt: skip
            target = rnd.choice(mine) if mine and rnd.random() < 0.4 else None
            if target is not None:  # a reviewer replaces an earlier row (an error too) with a value
                name, kind = target["name"], target["value_type"] or "number"
                value = {"string": rnd.choice(["yes", "no"]), "number": rnd.randint(0, 10) / 10, "bool": rnd.random() < 0.5}[kind]
            row = {c: None for c in ASSESSMENTS.column_names}
            created = info["request_time"] + dt.timedelta(seconds=i * rnd.choice([1, 60, 86_400]))
            row.update(assessment_id=_hex(rnd, 32), trace_id=info["trace_id"], name=name, kind="feedback",
                       value_type=kind, source_type="HUMAN" if target else "CODE", created_at=created, day=created.date(),
                       overrides=target["assessment_id"] if target else None)  # fmt: skip
            if kind is not None:
                row[f"value_{kind}"] = value
            else:
                row.update(error_code="SCORER_ERROR", error_message="boom")
            mine.append(row)
        rows += mine
    return rows


def write(warehouse: Path, table: str, rows: list[dict[str, Any]], mode: str = "append") -> None:
    schema = {"trace_info": TRACE_INFO, "span_data": SPAN_DATA, "assessments": ASSESSMENTS}[table].schema
    write_deltalake(str(warehouse / table), _arrow(rows, schema), partition_by=["day"], mode=mode)  # type: ignore[arg-type]


def merge_trace_rows(warehouse: Path, rows: list[dict[str, Any]]) -> None:
    """Upsert trace_info rows by trace_id, the way ingest's MERGE rewrites a trace in place."""
    table = DeltaTable(str(warehouse / "trace_info"))
    (
        table.merge(
            _arrow(rows, TRACE_INFO.schema), predicate="t.trace_id = s.trace_id", source_alias="s", target_alias="t"
        )
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )


class Lake(tuple):
    """(warehouse, trace rows, span rows), with a short repr: hypothesis prints its arguments."""

    def __repr__(self) -> str:
        return f"Lake({self[0]})"


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict], list[dict]]:
    warehouse = tmp_path_factory.mktemp("lake")
    infos, spans = random_traces(7, 120)
    write(warehouse, "trace_info", infos[:60])  # two commits: several files per partition
    write(warehouse, "trace_info", infos[60:])
    write(warehouse, "span_data", spans)
    write(warehouse, "assessments", random_assessments(7, infos))
    run_costs(warehouse=str(warehouse))  # trace_costs, as `spanlake jobs run costs` writes it
    return Lake((warehouse, infos, spans))


def costs_of(warehouse: Path) -> dict[str, float | None]:
    """trace_id -> cost_usd of the trace_costs rows (a trace without a row is absent)."""
    return dict(pl.read_delta(str(warehouse / "trace_costs")).select("trace_id", "cost_usd").iter_rows())


def with_cost(warehouse: Path, infos: list[dict]) -> list[dict]:
    costs = costs_of(warehouse)
    return [dict(r, cost=costs.get(r["trace_id"])) for r in infos]


def all_pages(
    warehouse: Path, page_size: int, between: Callable[[int], None] | None = None, **kw: Any
) -> list[pl.DataFrame]:
    pages, token = [], None
    while True:
        page = search_traces(max_results=page_size, page_token=token, warehouse=str(warehouse), **kw)
        pages.append(page.frame)
        token = page.next_page_token
        if token is None:
            return pages
        if between:
            between(len(pages))


# --- paging -----------------------------------------------------------------------------


def _sorted_ids(infos: list[dict], keys: list[tuple[str, bool]]) -> list[str]:
    """The oracle order: Python sorts, one stable pass per key (last first), nulls last."""
    rows = sorted(infos, key=lambda r: r["trace_id"])
    for name, descending in reversed(keys):
        present = [r for r in rows if r[name] is not None]
        present.sort(key=lambda r: r[name], reverse=descending)
        rows = present + [r for r in rows if r[name] is None]
    return [r["trace_id"] for r in rows]


@pytest.mark.parametrize(
    ("order_by", "keys"),
    [
        (None, [("request_time", True)]),
        (["timestamp_ms ASC"], [("request_time", False)]),
        (["total_tokens DESC", "service_name"], [("total_tokens", True), ("service_name", False)]),
        (["trace.status", "execution_time_ms DESC"], [("state", False), ("duration_ms", True)]),
    ],
)
def test_pages_concatenate_to_the_full_sorted_result(lake, order_by, keys) -> None:
    warehouse, infos, _ = lake
    pages = all_pages(warehouse, 7, order_by=order_by)
    assert all(p.height == 7 for p in pages[:-1]) and 1 <= pages[-1].height <= 7
    walked = pl.concat(pages)
    assert walked["trace_id"].to_list() == _sorted_ids(infos, keys)
    full = search_traces(order_by=order_by, max_results=1000, warehouse=str(warehouse))
    assert full.next_page_token is None and walked.equals(full.frame)


def test_paging_with_a_filter_and_time_range(lake) -> None:
    warehouse, infos, spans = lake
    start, end = BASE + dt.timedelta(hours=20), dt.datetime(2024, 5, 3)  # naive = UTC
    kw: dict[str, Any] = dict(start_time=start, end_time=int(end.replace(tzinfo=UTC).timestamp() * 1000))
    llm = {s["trace_id"] for s in spans if s["span_type"] == "LLM"}
    expected = [r for r in infos if start <= r["request_time"] < end.replace(tzinfo=UTC) and r["trace_id"] in llm]
    walked = pl.concat(all_pages(warehouse, 4, filter_string="span.type = 'LLM'", **kw))
    assert walked["trace_id"].to_list() == _sorted_ids(expected, [("request_time", True)])
    assert count_traces("span.type = 'LLM'", warehouse=str(warehouse), **kw) == len(expected)


def test_paging_is_stable_while_a_writer_appends_and_merges(tmp_path: Path) -> None:
    infos, spans = random_traces(11, 40)
    write(tmp_path, "trace_info", infos)
    write(tmp_path, "span_data", spans)
    snapshot = _sorted_ids(infos, [("request_time", True)])
    rnd = random.Random(5)

    def concurrent_ingest(page_number: int) -> None:
        # New traces land at the front, middle and back of the order ...
        new = [make_trace(rnd, BASE + dt.timedelta(hours=rnd.randint(-5, 80)))[0] for _ in range(5)]
        write(tmp_path, "trace_info", new)
        # ... and late spans MERGE old rows in place, moving them across page boundaries.
        moved = []
        for r in rnd.sample(infos, 5):
            earlier = r["request_time"] - dt.timedelta(hours=30)
            moved.append(dict(r, request_time=earlier, day=earlier.date(), state="ERROR"))
        merge_trace_rows(tmp_path, moved)

    pages = all_pages(tmp_path, 6, between=concurrent_ingest, filter_string="span_count >= 1")
    walked = pl.concat(pages)["trace_id"].to_list()
    assert walked == snapshot  # the first page's version, no duplicates, no gaps
    assert len(set(walked)) == len(walked) == 40
    assert count_traces(warehouse=str(tmp_path)) == 40 + 5 * (len(pages) - 1)  # new searches see the writes


def test_page_token_round_trip_and_errors(lake) -> None:
    warehouse = str(lake[0])
    page = search_traces("state = 'OK'", max_results=3, warehouse=warehouse)
    token = page.next_page_token
    assert token is not None and "=" not in token
    payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    assert payload["v"] == 1 and payload["t"] == 1 and payload["s"] is None and payload["c"] >= 0
    assert payload["k"][-1] == page["trace_id"][-1]  # keyset cursor: last sort key + trace_id
    for bad in ("not a token!", "e30", base64.urlsafe_b64encode(b'{"v": 1, "k": 3}').decode(), token[:-6]):
        with pytest.raises(FilterError, match="invalid page token"):
            search_traces("state = 'OK'", max_results=3, page_token=bad, warehouse=warehouse)
    with pytest.raises(FilterError, match="page token belongs to a different search"):
        search_traces("state = 'ERROR'", max_results=3, page_token=token, warehouse=warehouse)
    with pytest.raises(FilterError, match="max_results must be at least 1"):
        search_traces(max_results=0, warehouse=warehouse)


def test_trace_page_delegates_to_its_frame(lake) -> None:
    page = search_traces(max_results=5, warehouse=str(lake[0]))
    assert isinstance(page, TracePage) and isinstance(page.frame, pl.DataFrame)
    assert len(page) == page.height == 5 and page["trace_id"].len() == 5
    assert page.columns == [*TRACE_INFO.column_names, "cost_usd"]
    assert page.to_dicts()[0]["trace_id"] == page.frame["trace_id"][0]


def test_include_spans_adds_each_traces_span_rows(lake) -> None:
    warehouse, infos, spans = lake
    page = search_traces(max_results=25, include_spans=True, warehouse=str(warehouse))
    for trace_id, trace_spans in page.select("trace_id", "spans").iter_rows():
        mine = [s for s in spans if s["trace_id"] == trace_id]
        expected = sorted(mine, key=lambda s: (s["start_time"], s["span_id"]))
        assert [s["span_id"] for s in trace_spans] == [s["span_id"] for s in expected]
    empty = search_traces("state = 'nope'", include_spans=True, warehouse=str(warehouse))
    assert empty.height == 0 and empty.frame.schema["spans"] == page.frame.schema["spans"]


def test_missing_table_is_a_table_error(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="table 'trace_info' does not exist"):
        search_traces(warehouse=str(tmp_path))


def test_time_and_day_bounds_reach_the_scan(lake) -> None:
    filter_string = "timestamp_ms >= '2024-05-02T06:00:00Z' AND span.type = 'LLM'"
    plan = scan_traces(filter_string, end_time="2024-05-03", warehouse=str(lake[0])).explain()
    assert plan.count('(col("day") >= 2024-05-02)') == 2  # both scans pruned by partition
    assert '(col("day") <= 2024-05-02)' in plan and '(col("day") <= 2024-05-03)' in plan  # spans: one day later


# --- scan_traces: the read layer --------------------------------------------------------


def test_scan_traces_is_the_lazy_selection_search_and_count_page_through(lake) -> None:
    warehouse, infos, spans = lake
    kw: dict[str, Any] = dict(start_time=BASE + dt.timedelta(hours=20), end_time="2024-05-03T12:00:00")
    filter_string = "span.type = 'TOOL' AND span.status = 'ERROR' OR state = 'ERROR'"
    selected = scan_traces(filter_string, warehouse=str(warehouse), **kw)
    assert isinstance(selected, pl.LazyFrame)
    frame = selected.collect()
    assert frame.columns == TRACE_INFO.column_names  # no helper columns leak out
    failed_tool = {s["trace_id"] for s in spans if s["span_type"] == "TOOL" and s["status_code"] == "ERROR"}
    start, end = BASE + dt.timedelta(hours=20), dt.datetime(2024, 5, 3, 12, tzinfo=UTC)
    expected = {r["trace_id"] for r in infos if start <= r["request_time"] < end
                and (r["trace_id"] in failed_tool or r["state"] == "ERROR")}  # fmt: skip
    assert set(frame["trace_id"]) == expected and frame.height == len(expected) > 5
    page = search_traces(filter_string, max_results=1000, warehouse=str(warehouse), **kw)
    assert page.frame.drop("cost_usd").sort("trace_id").equals(frame.sort("trace_id"))
    assert count_traces(filter_string, warehouse=str(warehouse), **kw) == len(expected)
    by_state = selected.group_by("state").len().collect()  # it composes like any LazyFrame
    assert by_state["len"].sum() == len(expected)


def test_scan_traces_include_spans_and_errors(lake, tmp_path: Path) -> None:
    warehouse, _, spans = lake
    with_spans = scan_traces("span.type = 'LLM'", include_spans=True, warehouse=str(warehouse)).collect()
    page = search_traces("span.type = 'LLM'", include_spans=True, max_results=1000, warehouse=str(warehouse))
    assert with_spans.height == page.height > 0
    assert with_spans.sort("trace_id").equals(page.frame.drop("cost_usd").sort("trace_id"))  # the same spans, in order
    for trace_id, trace_spans in with_spans.select("trace_id", "spans").iter_rows():
        assert len(trace_spans) == sum(s["trace_id"] == trace_id for s in spans)
    none = scan_traces("state = 'nope'", include_spans=True, warehouse=str(warehouse)).collect()
    assert none.height == 0 and none.schema["spans"] == with_spans.schema["spans"]
    with pytest.raises(FilterError, match=r"^expected a comparator"):  # eagerly, not at collect time
        scan_traces("state foo", warehouse=str(warehouse))
    with pytest.raises(TableError, match="table 'trace_info' does not exist"):
        scan_traces(warehouse=str(tmp_path))


# --- trace.cost: the cost job's trace_costs --------------------------------------------


def test_filter_and_order_by_trace_cost_page_through_the_cost_jobs_table(lake) -> None:
    warehouse, infos, _ = lake
    rows = with_cost(warehouse, infos)
    priced = [r for r in rows if r["cost"] is not None]
    assert 20 < len(priced) < len(rows) and len({r["cost"] for r in priced}) < len(priced)  # nulls and a tie
    for order_by, keys in [(["trace.cost DESC"], [("cost", True)]),
                           (["trace.cost ASC", "timestamp_ms DESC"], [("cost", False), ("request_time", True)])]:  # fmt: skip
        pages = all_pages(warehouse, 7, order_by=order_by)
        walked = pl.concat(pages)
        assert len(pages) > 10 and walked["trace_id"].to_list() == _sorted_ids(rows, keys)  # nulls last
        by_id = {r["trace_id"]: r["cost"] for r in rows}
        assert walked["cost_usd"].to_list() == [by_id[t] for t in walked["trace_id"]]
    over = [r for r in priced if r["cost"] > 0.008]
    walked = pl.concat(all_pages(warehouse, 4, filter_string="trace.cost > 0.008", order_by=["trace.cost ASC"]))
    assert walked["trace_id"].to_list() == _sorted_ids(over, [("cost", False)]) and len(over) > 8
    assert count_traces("trace.cost > 0.008", warehouse=str(warehouse)) == len(over)
    for filter_string, expected in [
        ("trace.cost IS NULL", {r["trace_id"] for r in rows if r["cost"] is None}),  # no model call, or unpriced
        ("trace.cost IS NOT NULL AND state = 'OK'", {r["trace_id"] for r in priced if r["state"] == "OK"}),
        ("NOT trace.cost > 0.008", {r["trace_id"] for r in priced if r["cost"] <= 0.008}),  # NULL stays unknown
        ("trace.cost <= 0.005 OR span.type = 'TOOL' AND trace.cost IN (0.008685)",
         {r["trace_id"] for r in priced if r["cost"] <= 0.005 or r["cost"] == 0.008685
          and any(s["trace_id"] == r["trace_id"] and s["span_type"] == "TOOL" for s in lake[2])}),
    ]:  # fmt: skip
        assert set(scan_traces(filter_string, warehouse=str(warehouse)).collect()["trace_id"]) == expected, filter_string
    with pytest.raises(FilterError, match=r"field 'trace.cost' is a number \(Float64\) and cannot be compared"):
        search_traces("trace.cost > '0.01'", warehouse=str(warehouse))


OVERRIDE = """
[[prices]]
model = "in-house-llm"
input_mtok = 1000.0
output_mtok = 1000.0
"""


def test_cost_order_pages_stay_on_the_first_pages_trace_costs_while_a_reprice_rewrites_it(tmp_path: Path) -> None:
    from spanlake.jobs.prices import PriceList

    infos, spans = random_traces(11, 60)
    write(tmp_path, "trace_info", infos)
    write(tmp_path, "span_data", spans)
    run_costs(warehouse=str(tmp_path))
    snapshot = _sorted_ids(with_cost(tmp_path, infos), [("cost", True)])
    (tmp_path / "prices.toml").write_text(OVERRIDE)
    prices = PriceList(tmp_path / "prices.toml")

    def reprice(page_number: int) -> None:  # the unpriced model gets a price: its traces move to the front
        run_costs(warehouse=str(tmp_path), reprice_since=dt.date(2024, 5, 1), prices=prices)

    walked = pl.concat(all_pages(tmp_path, 5, between=reprice, order_by=["trace.cost DESC"]))["trace_id"].to_list()
    assert walked == snapshot
    repriced = _sorted_ids(with_cost(tmp_path, infos), [("cost", True)])
    assert repriced != snapshot
    fresh = search_traces(order_by=["trace.cost DESC"], max_results=1000, warehouse=str(tmp_path))
    assert fresh["trace_id"].to_list() == repriced


def test_a_page_keeps_a_cost_written_before_the_traces_row_moved_earlier(tmp_path: Path) -> None:
    infos, spans = random_traces(5, 40)
    write(tmp_path, "trace_info", infos)
    write(tmp_path, "span_data", spans)
    run_costs(warehouse=str(tmp_path))
    costs = costs_of(tmp_path)
    moved = [dict(r, request_time=r["request_time"].replace(hour=0, minute=0)) for r in infos
             if costs.get(r["trace_id"]) is not None and r["request_time"].hour >= 1][:3]  # fmt: skip
    merge_trace_rows(tmp_path, moved)  # an earlier span arrived; the cost job has not run since
    page = search_traces(max_results=100, warehouse=str(tmp_path))
    shown = dict(page.select("trace_id", "cost_usd").iter_rows())
    assert len(moved) == 3 and [shown[r["trace_id"]] for r in moved] == [costs[r["trace_id"]] for r in moved]
    assert shown == {r["trace_id"]: costs.get(r["trace_id"]) for r in infos}


def test_trace_cost_before_the_cost_job_ran(tmp_path: Path) -> None:
    from spanlake.cli import cli

    infos, spans = random_traces(3, 10)
    write(tmp_path, "trace_info", infos)
    write(tmp_path, "span_data", spans)
    page = search_traces(warehouse=str(tmp_path))  # no filter on cost: every trace, cost unknown
    assert page.height == 10 and page["cost_usd"].null_count() == 10
    message = f"trace.cost reads the trace_costs table, which {tmp_path} does not have yet; run `spanlake jobs run costs` first"
    for call in (lambda: search_traces("trace.cost IS NULL", warehouse=str(tmp_path)),
                 lambda: search_traces(order_by=["trace.cost DESC"], warehouse=str(tmp_path)),
                 lambda: scan_traces("state = 'OK' OR trace.cost > 0.01", warehouse=str(tmp_path)),
                 lambda: count_traces("trace.cost > 0.01", warehouse=str(tmp_path))):  # fmt: skip
        with pytest.raises(TableError) as err:
            call()
        assert str(err.value) == message
    result = CliRunner().invoke(cli, ["traces", "search", "trace.cost > 0.01", "--warehouse", str(tmp_path)])
    assert result.exit_code == 1 and result.stderr.startswith(f"spanlake: error: {message}")
    assert result.stderr.count("\n") == 1


# --- get_trace --------------------------------------------------------------------------


def test_get_trace_orders_spans_from_two_appends(tmp_path: Path) -> None:
    rnd = random.Random(3)
    start = dt.datetime(2024, 5, 1, 23, 0, tzinfo=UTC)
    info, _ = make_trace(rnd, start, n_spans=0)
    tid = info["trace_id"]

    def span(span_id: str, parent: str | None, name: str, minutes: int, **kw: Any) -> dict[str, Any]:
        return make_span(rnd, tid, parent, start + dt.timedelta(minutes=minutes), span_id=span_id, name=name, **kw)

    first = [span("r", None, "root", 0, span_type="AGENT", total_tokens=None, duration_ms=5000.0, status_code="OK"),
             span("b", "r", "second", 2, span_type="TOOL", total_tokens=None, duration_ms=1.5, status_code="OK")]
    later = [span("a", "r", "first", 1, span_type="LLM", total_tokens=1234, duration_ms=800.25, status_code="ERROR"),
             span("a1", "a", "nested", 90, span_type="TOOL", total_tokens=None, duration_ms=2.0, status_code="OK"),  # next day
             span("o", "gone", "orphan", 3, span_type="CHAIN", total_tokens=None, duration_ms=3.0, status_code="UNSET")]  # fmt: skip
    info.update(span_count=5, total_tokens=1234, state="ERROR", duration_ms=5400000.0,
                end_time=start + dt.timedelta(minutes=90))  # fmt: skip
    write(tmp_path, "trace_info", [info])
    write(tmp_path, "span_data", first)
    write(tmp_path, "span_data", later)  # the rest of the trace arrives in a second commit
    write(tmp_path, "span_data", [make_span(rnd, "f" * 32, None, start, name="other")])

    trace = get_trace(tid, warehouse=str(tmp_path))
    assert [(s["span_id"], s["depth"], s["orphan"]) for s in trace.spans] == [
        ("r", 0, False), ("a", 1, False), ("a1", 2, False), ("b", 1, False), ("o", 0, True),
    ]
    assert trace.tree() == "\n".join([
        f"trace {tid}  ERROR  2024-05-01T23:00:00.000+00:00  5,400,000.0 ms  5 spans  1,234 tokens",
        "root [AGENT] 5,000.0 ms OK",
        "├─ first [LLM] 800.2 ms ERROR  1,234 tokens",
        "│  └─ nested [TOOL] 2.0 ms OK",
        "└─ second [TOOL] 1.5 ms OK",
        "orphan [CHAIN] 3.0 ms UNSET  (orphan: parent gone not found)",
    ])  # fmt: skip
    assert trace.spans_frame().height == 5 and trace.to_dict()["info"]["trace_id"] == tid


def test_get_trace_unknown_id(lake) -> None:
    with pytest.raises(TraceNotFoundError, match="no trace with id '0000' in ") as err:
        get_trace("0000", warehouse=str(lake[0]))
    assert isinstance(err.value, SpanlakeError)


def test_get_trace_when_request_time_is_not_the_earliest_stored_span(tmp_path: Path) -> None:
    rnd = random.Random(9)
    start = dt.datetime(2024, 5, 2, 10, tzinfo=UTC)
    moved, moved_spans = make_trace(rnd, start, n_spans=2)
    earlier = start - dt.timedelta(hours=30)  # the row says the trace began a day earlier
    moved.update(request_time=earlier, day=earlier.date())
    lonely, _ = make_trace(rnd, start, n_spans=0)  # a row whose spans are gone
    write(tmp_path, "trace_info", [moved, lonely])
    write(tmp_path, "span_data", moved_spans)
    trace = get_trace(moved["trace_id"], warehouse=str(tmp_path))
    assert trace.info["day"] == earlier.date() and len(trace.spans) == 3
    alone = get_trace(lonely["trace_id"], warehouse=str(tmp_path))
    assert alone.info["trace_id"] == lonely["trace_id"] and alone.spans == []


def test_trace_id_in_matches_is_in_for_short_and_long_lists() -> None:
    from spanlake.query.search import trace_id_in

    rnd = random.Random(4)
    ids = sorted({_hex(rnd, 32) for _ in range(1000)})
    frame = pl.DataFrame({"trace_id": ids})
    assert frame.filter(trace_id_in([])).is_empty()
    for n in (1, 50, 128, 129, 700):
        wanted = rnd.sample(ids, n) + ["f" * 32]  # plus one id that is not there
        assert frame.filter(trace_id_in(wanted))["trace_id"].to_list() == sorted(set(wanted) & set(ids))


def test_order_spans_survives_parent_cycles() -> None:
    from spanlake.query.traces import order_spans

    t = BASE
    spans = [dict(span_id="x", parent_span_id="y", start_time=t), dict(span_id="y", parent_span_id="x", start_time=t)]
    assert [(s["span_id"], s["depth"]) for s in order_spans(spans)] == [("x", 0), ("y", 1)]


# --- CLI --------------------------------------------------------------------------------


def test_cli_search_and_get(lake) -> None:
    from spanlake.cli import cli

    warehouse, infos, _ = lake
    runner = CliRunner()
    for args in (["traces", "--help"], ["traces", "search", "--help"], ["traces", "get", "--help"]):
        assert runner.invoke(cli, args).exit_code == 0
    where = ["--warehouse", str(warehouse)]
    out = runner.invoke(cli, ["traces", "search", "state = 'OK'", "--limit", "3", "--format", "json", *where])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert len(doc["traces"]) == 3 and doc["next_page_token"]
    again = runner.invoke(cli, ["traces", "search", "state = 'OK'", "--limit", "3", "--format", "csv",
                                "--page-token", doc["next_page_token"], "--warehouse", str(warehouse)])  # fmt: skip
    lines = again.stdout.splitlines()
    assert lines[0].startswith("trace_id,request_time") and len(lines) == 4
    assert "more traces: --page-token" in again.stderr
    table = runner.invoke(cli, ["traces", "search", "--order-by", "total_tokens DESC", "--warehouse", str(warehouse)])
    assert table.exit_code == 0 and "root_span_name" in table.stdout
    costly = runner.invoke(cli, ["traces", "search", "trace.cost > 0.01", "--order-by", "trace.cost DESC", *where])
    top = max(c for c in costs_of(warehouse).values() if c is not None)
    assert costly.exit_code == 0 and "cost_usd" in costly.stdout and f"{top:.6f}" in costly.stdout, costly.output
    assert "cost_usd" in doc["traces"][0] and "cost_usd" in lines[0].split(",")
    tid = doc["traces"][0]["trace_id"]
    tree = runner.invoke(cli, ["traces", "get", tid, "--warehouse", str(warehouse)])
    assert tree.exit_code == 0 and tree.stdout.startswith(f"trace {tid}")
    as_json = runner.invoke(cli, ["traces", "get", tid, "--format", "json", "--warehouse", str(warehouse)])
    assert json.loads(as_json.stdout)["info"]["trace_id"] == tid


def test_cli_errors_are_one_line(lake) -> None:
    from spanlake.cli import cli

    result = CliRunner().invoke(cli, ["traces", "search", "state foo", "--warehouse", str(lake[0])])
    assert result.exit_code == 1
    assert result.stderr.startswith("spanlake: error: expected a comparator (=, !=, <")
    assert "at position 6, found 'foo'" in result.stderr


# --- property: random filters against a plain-Python oracle -----------------------------


def _and(a: bool | None, b: bool | None) -> bool | None:
    return False if a is False or b is False else None if a is None or b is None else True


def _or(a: bool | None, b: bool | None) -> bool | None:
    return True if a is True or b is True else None if a is None or b is None else False


def _cmp(value: Any, test: Callable[[Any], bool]) -> bool | None:
    return None if value is None else test(value)


ASSESSED = "assessments"  # CLAUSES' second item for a feedback. clause (True: a span clause, False: a trace clause)


def _has(rows: list[dict], name: str, test: Callable[[dict], bool]) -> bool:
    return any(r["name"] == name and test(r) for r in rows)


def valid_assessments(rows: list[dict]) -> list[dict]:
    """The oracle's override rule: a replaced row is out; of rows replacing the same one, only the
    latest (created_at, assessment_id) stays."""
    replacing: dict[str, list[dict]] = {}
    for r in rows:
        if r["overrides"] is not None:
            replacing.setdefault(r["overrides"], []).append(r)
    out = set(replacing)
    for group in replacing.values():
        latest = max(group, key=lambda r: (r["created_at"], r["assessment_id"]))
        out |= {r["assessment_id"] for r in group if r is not latest}
    return [r for r in rows if r["assessment_id"] not in out]


CUT = BASE + dt.timedelta(days=1, hours=12)
CUT_MS = int(CUT.timestamp() * 1000)
Row: TypeAlias = dict[str, Any]
Span: TypeAlias = dict[str, Any]
# (filter text, on spans, test): a trace clause's test takes the trace_info row, a span clause's one span
CLAUSES: list[tuple[str, bool | str, Callable[[Any], bool | None]]] = [
    ("state = 'OK'", False, lambda r: r["state"] == "OK"),
    ("trace.status IN ('ERROR', 'IN_PROGRESS')", False, lambda r: r["state"] in ("ERROR", "IN_PROGRESS")),
    ("error_count > 0", False, lambda r: r["error_count"] > 0),
    ("service_name = 'checkout'", False, lambda r: _cmp(r["service_name"], lambda v: v == "checkout")),
    ("service_name LIKE 'ch%'", False, lambda r: _cmp(r["service_name"], lambda v: v.startswith("ch"))),
    ("total_tokens >= 2000", False, lambda r: _cmp(r["total_tokens"], lambda v: v >= 2000)),
    ("user_id IS NULL", False, lambda r: r["user_id"] is None),
    ("tags.env = 'prod'", False, lambda r: _cmp((r["tags"] or {}).get("env"), lambda v: v == "prod")),
    ("metadata.`mlflow.trace.user` != 'u1'", False, lambda r: r["metadata"]["mlflow.trace.user"] != "u1"),
    ("models = 'gpt-4o'", False, lambda r: "gpt-4o" in r["models"]),
    ("trace.text ILIKE '%delta%'", False,
     lambda r: any("delta" in (p or "").lower() for p in (r["request_preview"], r["response_preview"]))),
    (f"timestamp_ms > {CUT_MS}", False, lambda r: r["request_time"] >= CUT + dt.timedelta(milliseconds=1)),
    ("request_time < '2024-05-02T06:00:00Z'", False,
     lambda r: r["request_time"] < dt.datetime(2024, 5, 2, 6, tzinfo=UTC)),
    ("span.type = 'LLM'", True, lambda x: x["span_type"] == "LLM"),
    ("span.name LIKE 'tool:%'", True, lambda x: x["name"].startswith("tool:")),
    ("span.attributes.retries >= 2", True, lambda x: json.loads(x["attributes"])["retries"] >= 2),
    ("span.status = 'ERROR'", True, lambda x: x["status_code"] == "ERROR"),
    ("span.type = 'TOOL'", True, lambda x: x["span_type"] == "TOOL"),
    ("span.status != 'OK'", True, lambda x: x["status_code"] != "OK"),
    ("span.type IN ('TOOL', 'RETRIEVER')", True, lambda x: x["span_type"] in ("TOOL", "RETRIEVER")),
    # an assessment clause's test takes the trace's valid assessments rows
    ("feedback.correctness = 'yes'", ASSESSED, lambda rows: _has(rows, "correctness", lambda r: r["value_string"] == "yes")),
    ("feedback.correctness != 'yes'", ASSESSED,
     lambda rows: _has(rows, "correctness", lambda r: r["value_type"] == "string" and r["value_string"] != "yes")),
    ("feedback.score > 0.5", ASSESSED, lambda rows: _has(rows, "score", lambda r: (r["value_number"] or 0) > 0.5)),
    ("feedback.ok = 'true'", ASSESSED, lambda rows: _has(rows, "ok", lambda r: r["value_bool"] is True)),
    ("feedback.score IS NULL", ASSESSED, lambda rows: not _has(rows, "score", lambda r: r["value_type"] is not None)),
    # trace.cost: the row's `cost` is its trace_costs cost_usd (None: no row, or unpriced)
    ("trace.cost > 0.008", False, lambda r: _cmp(r["cost"], lambda v: v > 0.008)),
    ("trace.cost <= 0.005", False, lambda r: _cmp(r["cost"], lambda v: v <= 0.005)),
    ("trace.cost IS NULL", False, lambda r: r["cost"] is None),
]  # fmt: skip
COST_OVER, COST_NULL = 25, 27
SPAN_TOOL, SPAN_ERROR = 17, 16

PRECEDENCE = {"OR": 1, "AND": 2, "NOT": 3, "CLAUSE": 4}
leaves = st.sampled_from(range(len(CLAUSES))).map(lambda i: ("CLAUSE", i))
redundant_parens = st.sampled_from([False, False, False, True])
trees = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.tuples(st.sampled_from(["AND", "OR"]), kids, kids, redundant_parens),
        st.tuples(st.just("NOT"), kids, redundant_parens),
    ),
    max_leaves=6,
)


def render(node: tuple, outer: int = 0) -> str:
    """Filter text with only the parentheses precedence needs (plus some redundant ones)."""
    op = node[0]
    if op == "CLAUSE":
        return CLAUSES[node[1]][0]
    if op == "NOT":
        text, extra = f"NOT {render(node[1], PRECEDENCE['NOT'])}", node[2]
    else:
        text, extra = f"{render(node[1], PRECEDENCE[op])} {op} {render(node[2], PRECEDENCE[op] + 1)}", node[3]
    return f"({text})" if extra or PRECEDENCE[op] < outer else text


def _conjuncts(node: tuple) -> list[tuple]:
    return _conjuncts(node[1]) + _conjuncts(node[2]) if node[0] == "AND" else [node]


def oracle(node: tuple, row: Row, spans: list[Span], assessed: list[dict]) -> bool | None:
    """SQL's three-valued logic over the trace, where the span clauses of one AND chain (through
    parentheses) describe one span: true when some span satisfies all of them (MLflow's EXISTS);
    each assessment clause is true or false for the trace (some valid row satisfies it); OR and
    NOT combine the trace-level results."""
    op = node[0]
    if op == "NOT":
        negated = oracle(node[1], row, spans, assessed)
        return None if negated is None else not negated
    if op == "OR":
        return _or(oracle(node[1], row, spans, assessed), oracle(node[2], row, spans, assessed))
    items = _conjuncts(node)
    on_span = [CLAUSES[i[1]][2] for i in items if i[0] == "CLAUSE" and CLAUSES[i[1]][1] is True]
    value: bool | None = any(all(test(x) is True for test in on_span) for x in spans) if on_span else True
    for item in items:
        if item[0] != "CLAUSE":
            value = _and(value, oracle(item, row, spans, assessed))
        elif CLAUSES[item[1]][1] is False:
            value = _and(value, CLAUSES[item[1]][2](row))
        elif CLAUSES[item[1]][1] == ASSESSED:
            value = _and(value, CLAUSES[item[1]][2](assessed))
    return value


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees)
@example(tree=("OR", ("AND", ("CLAUSE", 0), ("CLAUSE", 2), False), ("CLAUSE", 13), False))  # a AND b OR c
@example(tree=("AND", ("CLAUSE", SPAN_TOOL), ("CLAUSE", SPAN_ERROR), False))  # a failed tool: one span
@example(tree=("AND", ("CLAUSE", 13), ("AND", ("CLAUSE", 0), ("CLAUSE", 18), False), False))  # one span through ()
@example(tree=("AND", ("CLAUSE", 13), ("NOT", ("CLAUSE", 16), False), False))  # NOT: no span at all
@example(tree=("AND", ("NOT", ("CLAUSE", 7), False), ("OR", ("CLAUSE", 3), ("CLAUSE", 14), False), False))
@example(tree=("AND", ("CLAUSE", 20), ("OR", ("CLAUSE", 13), ("NOT", ("CLAUSE", 22), False), False), False))
@example(tree=("OR", ("NOT", ("CLAUSE", COST_OVER), False), ("AND", ("CLAUSE", COST_NULL), ("CLAUSE", 13), False), False))
def test_random_filters_match_the_oracle(lake, tree: tuple) -> None:
    warehouse, infos, spans = lake
    infos = with_cost(warehouse, infos)
    by_trace: dict[str, list[dict]] = {}
    for s in spans:
        by_trace.setdefault(s["trace_id"], []).append(s)
    assessed: dict[str, list[dict]] = {}
    for a in valid_assessments(pl.read_delta(str(warehouse / "assessments")).to_dicts()):
        assessed.setdefault(a["trace_id"], []).append(a)
    text = render(tree)
    expected = {
        r["trace_id"] for r in infos
        if oracle(tree, r, by_trace.get(r["trace_id"], []), assessed.get(r["trace_id"], [])) is True
    }  # fmt: skip
    got = search_traces(text, max_results=1000, warehouse=str(warehouse))
    assert set(got["trace_id"].to_list()) == expected, text


def test_order_by_map_keys_and_bad_order_keys(lake) -> None:
    warehouse, infos, _ = lake
    page = search_traces(order_by=["tags.env DESC"], max_results=1000, warehouse=str(warehouse))
    envs = [(r["tags"] or {}).get("env") for r in page.to_dicts()]
    present = [e for e in envs if e is not None]
    assert present == sorted(present, reverse=True) and envs[len(present):] == [None] * (len(envs) - len(present))
    for order_by, message in [
        (["span.name"], "cannot order by 'span.name'"),
        (["text"], "cannot order by 'text'"),
        (["state SIDEWAYS"], "expected ASC, DESC or the end of the order key at position 6, found 'SIDEWAYS'"),
        ("state", "order_by takes a list of keys"),
        (["nope"], "unknown field 'nope' at position 0; valid fields: "),
    ]:
        with pytest.raises(FilterError, match=re.escape(message)):
            search_traces(order_by=order_by, warehouse=str(warehouse))


# --- end to end: span clauses describe one span ------------------------------------------


def test_a_failed_tool_means_the_tool_span_itself_failed(settings) -> None:
    """Through the real path (OTel SDK -> KafkaSpanExporter -> broker -> spanlake ingest -> Delta):
    `span.type = 'TOOL' AND span.status = 'ERROR'` asks for one span that is both, as MLflow does."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Status, StatusCode
    from support import create_topic, ingest

    from spanlake.exporter import KafkaSpanExporter
    from spanlake.tables import scan

    create_topic(settings, partitions=1)
    provider = TracerProvider(resource=Resource.create({"service.name": "agent-runner"}))
    provider.add_span_processor(BatchSpanProcessor(KafkaSpanExporter(settings.bootstrap_servers, settings.topic)))
    tracer = provider.get_tracer("test")

    def agent_trace(tool_fails: bool, model_fails: bool) -> str:
        root_attrs = {"gen_ai.operation.name": "invoke_agent"}
        with tracer.start_as_current_span("agent.request", attributes=root_attrs) as root:
            tool_attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "run_sql"}
            with tracer.start_as_current_span("execute_tool run_sql", attributes=tool_attrs) as tool:
                if tool_fails:
                    tool.set_status(Status(StatusCode.ERROR, "run_sql timed out"))
            chat_attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}
            with tracer.start_as_current_span("chat gpt-4o", attributes=chat_attrs) as chat:
                if model_fails:
                    chat.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))
        return f"{root.get_span_context().trace_id:032x}"

    healthy_tool_failed_model = agent_trace(tool_fails=False, model_fails=True)
    failed_tool = agent_trace(tool_fails=True, model_fails=False)
    both_failed = agent_trace(tool_fails=True, model_fails=True)
    healthy = agent_trace(tool_fails=False, model_fails=False)
    provider.shutdown()
    ingest(settings)

    def found(filter_string: str) -> set[str]:
        return set(scan_traces(filter_string, warehouse=settings.warehouse).collect()["trace_id"])

    assert found("span.type = 'TOOL'") == {healthy_tool_failed_model, failed_tool, both_failed, healthy}
    assert found("span.status = 'ERROR'") == {healthy_tool_failed_model, failed_tool, both_failed}
    assert found("span.type = 'TOOL' AND span.status = 'ERROR'") == {failed_tool, both_failed}
    assert found("span.type = 'TOOL' AND NOT span.status = 'ERROR'") == {healthy}  # NOT: no span failed
    assert found("span.type = 'TOOL' AND span.status != 'ERROR'") == {healthy_tool_failed_model, healthy}
    # the README's Polars semi-join asks the same question
    spans = scan("span_data", warehouse=settings.warehouse)
    semi = scan("trace_info", warehouse=settings.warehouse).join(
        spans.filter((pl.col("span_type") == "TOOL") & (pl.col("status_code") == "ERROR")), on="trace_id", how="semi"
    )
    assert set(semi.collect()["trace_id"]) == {failed_tool, both_failed}
    page = search_traces("span.type = 'TOOL' AND span.status = 'ERROR'", warehouse=settings.warehouse)
    assert set(page["trace_id"]) == {failed_tool, both_failed}
