"""Review queue: traces picked by a filter (a failing scorer, say) or a random sample of the range,
shown one after another for a person to label with the registered scorers' names. Labels go to
`assessments` as HUMAN feedback (an override where a scorer had a verdict); Save & next moves on,
past the traces this reviewer has labelled already when skipping is on.

The queue is fixed when it is picked (kept in the session): labelling a trace can change which
traces the filter matches (`feedback.trace_failed = 'yes'` no longer matches a trace a person
marked "no"), and the positions must not shift under the reviewer. The URL keeps the filter, the
pick, its size and seed and the position, so a reload picks the queue again.
"""

from __future__ import annotations

import dataclasses
import random

import polars as pl
import streamlit as st

from spanlake.dashboard import data, feedback_form, global_filters, one_trace, pages, payload_view, units
from spanlake.dashboard.global_filters import Filters
from spanlake.errors import SpanlakeError
from spanlake.query import Trace, scan_traces

MAX_QUEUE = 500
PICKS = {"newest": "newest first", "sample": "a random sample"}
QUEUE = "review_queue"  # session key: {"key": the queue's parameters, "ids": its trace ids}


@data.query_loader("trace_info", "span_data", "assessments")
def pick_traces(filter_string: str, filters: Filters, pick: str, n: int, seed: int) -> list[str]:
    """The trace ids of the queue: the newest `n` matching traces, or `n` of them at random
    (ordered by a seeded hash of the id, so one seed always draws the same sample)."""
    warehouse, options = data.location()
    where = " AND ".join(f"({s})" for s in (filter_string, filters.filter_string()) if s) or None
    rows = scan_traces(where, start_time=filters.start, end_time=filters.end, warehouse=warehouse,
                       storage_options=options).select("trace_id", "request_time")  # fmt: skip
    if pick == "sample":
        rows = rows.sort(pl.col("trace_id").hash(seed)).head(n)
    else:
        rows = rows.sort("request_time", "trace_id", descending=True).head(n)
    return rows.collect()["trace_id"].to_list()


@data.loader("assessments")
def labelled(assessments: pl.LazyFrame, reviewer: str, names: tuple[str, ...], ids: tuple[str, ...]) -> set[str]:
    """Which of `ids` this reviewer has labelled with any of `names`."""
    return set(
        assessments.filter(pl.col("source_type") == "HUMAN", pl.col("source_id") == reviewer,
                           pl.col("name").is_in(list(names)), pl.col("trace_id").is_in(list(ids)))  # fmt: skip
        .select("trace_id").unique().collect()["trace_id"].to_list()
    )


def next_position(ids: list[str], after: int, done: set[str], skip: bool) -> int:
    """The position after `after` (-1: the start), past labelled traces when skipping; len(ids) at the end."""
    for position in range(after + 1, len(ids)):
        if not skip or ids[position] not in done:
            return position
    return len(ids)


def go(position: int) -> None:
    st.query_params["i"] = str(position)
    st.rerun()


def show_trace(trace: Trace) -> None:
    info = trace.info
    st.page_link(pages.page("trace"), label=f"Trace {trace.trace_id}", icon=":material/account_tree:",
                 query_params={"trace_id": trace.trace_id})  # fmt: skip
    st.caption(" · ".join([info["state"], units.duration(info["duration_ms"]), f"{info['span_count']} spans",
                           f"{units.count(info['total_tokens'])} tokens", str(info["service_name"]),
                           f"{info['request_time']:%Y-%m-%d %H:%M:%S} UTC"]))  # fmt: skip
    request, response = st.columns(2)
    with request:
        st.markdown("**Request**")
        payload_view.show(trace.data.request, what="Request")
    with response:
        st.markdown("**Response**")
        payload_view.show(trace.data.response, what="Response")
    verdicts = [a for a in trace.assessments if a["valid"] and a["kind"] == "feedback" and a["span_id"] is None]
    if verdicts:
        st.caption("Verdicts now: " + ", ".join(
            f"{a['name']} = {a['error_code'] or feedback_form.shown(a['value'])} ({a['source_type']})" for a in verdicts))  # fmt: skip
    with st.expander("Spans", expanded=True):
        costs, _ = one_trace.costs_of(trace)
        one_trace.span_list(one_trace.span_frame(trace, costs))


def label_form(trace: Trace, names: list[str], reviewer: str, position: int, ids: list[str], skip: bool) -> None:
    kinds = feedback_form.value_kinds()
    key = f"rv-{trace.trace_id}"
    values = {}
    cells = st.columns(min(len(names), 4) or 1)
    for i, name in enumerate(names):
        with cells[i % len(cells)]:
            values[name] = feedback_form.value_input(kinds.get(name, "yes/no"), key=f"{key}-{name}", label=name,
                                                     optional=True)  # fmt: skip
    rationale = st.text_area("Rationale", key=f"{key}-rationale", placeholder="why (optional, stored with each label)")
    save, skip_one, back = st.columns([2, 1, 1])
    if save.button("Save & next", type="primary", key="review-save", icon=":material/done:"):
        given = {name: value for name, value in values.items() if value is not None}
        try:
            if not given:
                raise SpanlakeError("Pick a value for at least one name, or press Skip.")
            said = [feedback_form.record(trace, name=name, value=value, reviewer=reviewer, rationale=rationale)
                    for name, value in given.items()]  # fmt: skip
        except SpanlakeError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        st.session_state[feedback_form.FLASH] = "; ".join(said)
        go(next_position(ids, position, labelled(reviewer, tuple(names), tuple(ids)) | {trace.trace_id}, skip))
    if skip_one.button("Skip", key="review-skip", icon=":material/skip_next:"):
        go(next_position(ids, position, labelled(reviewer, tuple(names), tuple(ids)), skip))
    if back.button("Previous", key="review-back", icon=":material/skip_previous:", disabled=position == 0):
        go(position - 1)


st.title("Review queue")
feedback_form.flash()
with data.page_errors():
    if data.no_traces_notice():
        st.stop()
    filters = global_filters.current()
    registered, problem = feedback_form.scorer_names()
    where, how, size = st.columns([4, 2, 1])
    query = (where.text_input("Traces matching", key="q", bind="query-params",
                              placeholder="feedback.trace_failed = 'yes'",
                              help="The filter language of Traces; empty: every trace of the range.") or "").strip()  # fmt: skip
    pick = how.radio("Pick", list(PICKS), format_func=PICKS.__getitem__, key="pick", bind="query-params", horizontal=True)
    n = int(size.number_input("How many", min_value=1, max_value=MAX_QUEUE, value=20, key="n", bind="query-params"))
    names = st.multiselect("Label with", registered, default=registered, key="names", accept_new_options=True,
                           help="The registered scorers (SPANLAKE_SCORERS_FILE); type to add another name.")  # fmt: skip
    if problem:
        st.caption(f"No registered scorers to offer: {problem}")
    reviewer = feedback_form.reviewer_input()
    skip = st.toggle("Skip traces I have labelled with these names", value=True, key="skip")
    seed = int(st.query_params.get("seed", "0") or 0)
    if pick == "sample" and st.button("Draw another sample", icon=":material/casino:"):
        st.query_params["seed"] = str(random.randrange(1, 2**31))
        st.query_params.pop("i", None)
        st.rerun()
    # The range's label, not its start (which moves every minute): the queue must not re-pick itself.
    queue_key = (query, dataclasses.replace(filters, start=None, end=None), pick, n, seed)
    queue = st.session_state.get(QUEUE)
    if queue is None or queue["key"] != queue_key:
        try:
            queue = {"key": queue_key, "ids": pick_traces(query, filters, pick, n, seed)}
        except SpanlakeError as exc:  # a bad filter: say what is wrong beside the box
            st.error(str(exc), icon=":material/error:")
            st.stop()
        if st.session_state.get(QUEUE) is not None:
            st.query_params.pop("i", None)  # a new queue starts at its beginning
        st.session_state[QUEUE] = queue
    ids: list[str] = queue["ids"]
    if not ids:
        st.info(f"No traces in the last {filters.range} match: change the filter or widen the time range.")
        st.stop()
    if not names:
        st.info("Choose at least one name to label with.")
        st.stop()
    if not reviewer:
        st.info("Enter your name or e-mail as the reviewer to start: it is stored with every label.")
        st.stop()
    done = labelled(reviewer, tuple(names), tuple(ids))
    raw = st.query_params.get("i")
    position = next_position(ids, -1, done, skip) if raw is None else min(max(int(raw), 0), len(ids))
    if position >= len(ids):
        st.success(f"Done: all {len(ids)} traces of this queue are reviewed ({len(done)} labelled by {reviewer}).")
        if st.button("Start over", key="review-restart"):
            go(0)
        st.stop()
    st.progress((position + 1) / len(ids), text=f"Trace {position + 1} of {len(ids)}"
                + (" · labelled by you" if ids[position] in done else ""))  # fmt: skip
    trace = one_trace.load(ids[position])
    if trace is None:
        st.warning(f"Trace {ids[position]} is no longer in the warehouse (expired?): press Skip.")
        if st.button("Skip", key="review-skip"):
            go(next_position(ids, position, done, skip))
        st.stop()
    show_trace(trace)
    st.subheader("Your labels")
    label_form(trace, [str(n) for n in names], reviewer, position, ids, skip)
