"""Traces: search with search_traces' filter language, quick filters, server-side sorting and
paging by page tokens; a row opens Trace detail. The box, quick filters and sort live in the URL.

The filter searched is the box AND each quick filter AND the sidebar's filters, each part in
parentheses. Paging keeps the walk's page tokens (a token pins the tables' versions, so pages
do not shift while ingest writes) and the start time the walk began with: the sidebar's start
moves every minute, and a token only continues the search that made it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import streamlit as st

from spanlake.dashboard import data, global_filters, pages, units
from spanlake.dashboard.global_filters import Filters
from spanlake.errors import FilterError
from spanlake.query import compile_filter, count_traces, search_traces
from spanlake.query.filters import order_key

PAGE_SIZE = 50
TABLE_KEY = "traces_table"
PAGING_KEY = "traces_paging"
# label -> order_by item; "cost" only where search_traces knows trace.cost (the tracecost feature).
SORTS = {
    "Newest first": "request_time DESC",
    "Oldest first": "request_time ASC",
    "Slowest first": "duration_ms DESC",
    "Most tokens": "total_tokens DESC",
    "Most spans": "span_count DESC",
    "Most errors": "error_count DESC",
    "Costliest": "trace.cost DESC",
}
# Quick filters by label (a bound widget keeps its shown label in the URL: ?quick=Errors).
SLOW = "Slower than p95"
QUICK = {
    "Errors": "trace.status = 'ERROR'",
    "Failed tool calls": "span.type = 'TOOL' AND span.status = 'ERROR'",
    SLOW: "",  # duration_ms above the range's p95, computed when chosen
}
VERDICT = " = "  # a feedback choice is "<name> = yes|no"
SHOWN = ("request_time", "trace_id", "state", "root_span_name", "service_name", "user_id", "session_id",
         "duration_ms", "span_count", "error_count", "total_tokens", "cost_usd", "request_preview")  # fmt: skip


def sorts() -> dict[str, str]:
    """The sort choices this warehouse's search supports."""
    out = {}
    for label, item in SORTS.items():
        try:
            order_key(item)
        except FilterError:
            continue
        out[label] = item
    return out


def field_name(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@data.loader("trace_info")
def p95_ms(trace_info: pl.LazyFrame, filters: Filters) -> float | None:
    """The p95 trace latency in the filters (the "slower than p95" threshold)."""
    value: float | None = (
        trace_info.filter(filters.trace_expr()).select(pl.col("duration_ms").quantile(0.95)).collect().item()
    )
    return value


@data.loader("assessments")
def feedback_names(assessments: pl.LazyFrame) -> list[str]:
    """Names of the feedback recorded so far (the quick filter's choices)."""
    names = assessments.filter(pl.col("kind") == "feedback").select(pl.col("name").unique().sort()).collect()
    return names.to_series().to_list()


def quick_terms(chosen: list[str], verdict: str, filters: Filters) -> list[str]:
    terms = [QUICK[label] for label in chosen if QUICK.get(label)]
    if SLOW in chosen:
        threshold = p95_ms(filters)
        if threshold is not None:  # no traces in the range: nothing is slower, and nothing shows anyway
            terms.append(f"duration_ms > {threshold!r}")
    if verdict:
        name, _, value = verdict.rpartition(VERDICT)
        terms.append(f"feedback.{field_name(name)} = {global_filters.quote(value)}")
    return terms


def combine(parts: list[str]) -> str:
    return " AND ".join(f"({part})" for part in parts if part.strip())


@data.loader("trace_info", "span_data", "assessments")
def search(_t: Any, _s: Any, _a: Any, filter_string: str, order: str, start: dt.datetime | None,
           token: str | None) -> tuple[pl.DataFrame, str | None]:  # fmt: skip
    """One page of the search (search_traces opens the tables itself; their versions key the cache)."""
    warehouse, options = data.location()
    page = search_traces(filter_string or None, order_by=[order], max_results=PAGE_SIZE, page_token=token,
                         start_time=start, warehouse=warehouse, storage_options=options)  # fmt: skip
    return page.frame.select(c for c in SHOWN if c in page.frame.columns), page.next_page_token


@data.loader("trace_info", "span_data", "assessments")
def matching(_t: Any, _s: Any, _a: Any, filter_string: str, start: dt.datetime | None) -> int:
    """How many traces the search matches in all."""
    warehouse, options = data.location()
    return count_traces(filter_string or None, start_time=start, warehouse=warehouse, storage_options=options)


def paging(search_key: tuple[Any, ...], start: dt.datetime | None) -> dict[str, Any]:
    """The walk's state: its start time, the token of each page seen, the page shown. On the
    first page a walk starts afresh (with the range's current start)."""
    state = st.session_state.get(PAGING_KEY)
    if state is None or state["key"] != search_key or state["page"] == 0:
        state = {"key": search_key, "start": start, "tokens": [None], "page": 0}
        st.session_state[PAGING_KEY] = state
    return state


def turn(state: dict[str, Any], step: int) -> None:
    state["page"] = max(0, state["page"] + step)


def shown(frame: pl.DataFrame) -> pl.DataFrame:
    """The page's rows as people read them (the order is the search's)."""
    return frame.with_columns(
        units.column("duration_ms", units.duration).alias("duration"),
        units.column("total_tokens", units.count).alias("tokens"),
        *([units.column("cost_usd", units.usd).alias("cost")]
          if "cost_usd" in frame.columns else []),  # fmt: skip
        pl.col("request_preview").str.slice(0, 120).alias("request"),
    ).select(
        pl.col("request_time").alias("time"), "trace_id", "state", pl.col("root_span_name").alias("root span"),
        pl.col("service_name").alias("service"), "duration", "tokens", *(["cost"] if "cost_usd" in frame.columns else []),
        pl.col("span_count").alias("spans"), pl.col("error_count").alias("errors"),
        pl.col("user_id").alias("user"), pl.col("session_id").alias("session"), "request",
    )  # fmt: skip


def controls(filters: Filters) -> tuple[str, str, str] | None:
    """The search box, quick filters and sort; (box, full filter, order), or None after an error."""
    choices = sorts()
    box = st.text_input("Filter", key="q", bind="query-params",
                        placeholder="trace.status = 'ERROR' AND span.type = 'TOOL'",
                        help="search_traces' filter language: fields of trace_info, tags.<key>, span.<field>, "
                             "feedback.<name>; = != < > LIKE ILIKE IN IS NULL; AND, OR, NOT, parentheses.")  # fmt: skip
    left, middle, right = st.columns([3, 2, 2])
    chosen = left.pills("Quick filters", list(QUICK), selection_mode="multi", key="quick", bind="query-params") or []
    verdicts = [f"{name}{VERDICT}{value}" for name in feedback_names() for value in ("yes", "no")]
    verdict = middle.selectbox("Feedback", ["", *verdicts], key="feedback", bind="query-params",
                               format_func=lambda v: v or "any")  # fmt: skip
    label = right.selectbox("Sort", list(choices), key="sort", bind="query-params")
    try:
        compile_filter(box or None)  # the box alone, so an error's positions are the box's
    except FilterError as exc:
        st.error(str(exc), icon=":material/error:")
        return None
    full = combine([box, *quick_terms(chosen, verdict, filters), filters.filter_string()])
    return box, full, choices[label or next(iter(choices))]


def results(filters: Filters, full: str, order: str) -> None:
    state = paging((full, order, filters.range), filters.start)
    frame, token = search(full, order, state["start"], state["tokens"][state["page"]])
    if token is not None and len(state["tokens"]) == state["page"] + 1:
        state["tokens"].append(token)
    total = matching(full, state["start"])
    first = state["page"] * PAGE_SIZE
    st.caption(f"{units.count(total)} traces match · rows {first + 1 if frame.height else 0}–{first + frame.height}"
               f" · page {state['page'] + 1}" + (" · select a row to open it" if frame.height else ""))  # fmt: skip
    if frame.is_empty():
        st.info(f"No traces match in {filters.period}: loosen the filter or widen the time range.")
        return
    event = st.dataframe(shown(frame), key=TABLE_KEY, on_select="rerun", selection_mode="single-row",
                         hide_index=True, width="stretch")  # fmt: skip
    back, forward, _ = st.columns([1, 1, 6])
    back.button("Previous page", key="traces_previous", on_click=turn, args=(state, -1), disabled=state["page"] == 0)
    forward.button("Next page", key="traces_next", on_click=turn, args=(state, 1), disabled=token is None)
    rows = event.selection.rows if event else []
    if rows:
        st.switch_page(pages.page("trace"), query_params={"trace_id": frame["trace_id"][rows[0]]})


st.title("Traces")
with data.page_errors():
    if data.no_traces_notice():
        st.stop()
    filters = global_filters.current()
    picked = controls(filters)
    if picked is not None:
        results(filters, picked[1], picked[2])
