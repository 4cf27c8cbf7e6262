"""Trace detail (`?trace_id=<32 hex>`): the header, a waterfall of the spans on a time axis
(click a bar to select a span), the span tree, the selected span's inputs and outputs drawn for
people, attributes, events and exceptions, tokens and cost, the assessments, and a form that
records human feedback (source HUMAN)."""

from __future__ import annotations

from typing import Any

import altair as alt
import polars as pl
import streamlit as st

from spanlake.dashboard import data, feedback_form, one_trace, pages, payload_view, units
from spanlake.errors import SpanlakeError
from spanlake.query import Span, Trace
from spanlake.query.entities import parse_payload
from spanlake.tables.vocabulary import SPAN_TYPES

WATERFALL = "waterfall"  # the chart's key: its click selection lands in st.session_state[WATERFALL]
BAR_PX = 22


def waterfall(spans: pl.DataFrame) -> alt.Chart:
    """One bar per span from its start to its end (ms from the trace's start), in tree order."""
    width = max(spans.select(pl.col("end_ms").max().fill_null(0.0)).item(), 1.0)
    frame = spans.with_columns(
        # A span of no measurable length still gets a visible sliver.
        bar_end=pl.max_horizontal("end_ms", pl.col("start_ms") + width / 400),
        duration=pl.Series([units.duration(v) for v in spans["duration_ms"]], dtype=pl.String),
        tokens=pl.Series([units.count(v) if v is not None else "–" for v in spans["total_tokens"]], dtype=pl.String),
        cost=pl.Series([units.usd(v) for v in spans["cost_usd"]], dtype=pl.String),
    ).select("span_id", "label", "name", "span_type", "status", "model", "start_ms", "bar_end", "duration", "tokens", "cost")
    pick = alt.selection_point(name="span", fields=["span_id"], on="click")
    return (
        alt.Chart(frame)
        .mark_bar(cornerRadius=2)
        .encode(
            x=alt.X("start_ms:Q", title="ms from the trace's start"),
            x2="bar_end:Q",
            y=alt.Y("label:N", sort=None, title=None, axis=alt.Axis(labelLimit=360, labelFontSize=11)),
            color=alt.Color("span_type:N", title="span type", scale=alt.Scale(domain=list(SPAN_TYPES))),
            stroke=alt.condition("datum.status == 'ERROR'", alt.value("#d62728"), alt.value(None)),
            strokeWidth=alt.value(2),
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.55)),
            tooltip=[alt.Tooltip("name:N", title="span"), alt.Tooltip("span_type:N", title="type"), "status:N",
                     alt.Tooltip("start_ms:Q", title="starts at ms", format=",.1f"), "duration:N", "model:N",
                     "tokens:N", "cost:N"],
        )  # fmt: skip
        .add_params(pick)
        .properties(height=max(80, BAR_PX * frame.height))
    )


def header(trace: Trace, cost: float | None) -> None:
    info = trace.info
    cells = st.columns(6)
    for cell, (label, value) in zip(cells, (
        ("Status", info["state"]), ("Duration", units.duration(info["duration_ms"])),
        ("Spans", units.count(info["span_count"])), ("LLM calls", units.count(info["llm_call_count"])),
        ("Tokens", units.count(info["total_tokens"])), ("Cost", units.usd(cost)),
    )):  # fmt: skip
        cell.metric(label, value)
    facts = [f"started {info['request_time']:%Y-%m-%d %H:%M:%S.%f}"[:-3] + " UTC", f"service **{info['service_name']}**"]
    for key, label in (("environment", "environment"), ("user_id", "user")):
        if info.get(key):
            facts.append(f"{label} **{info[key]}**")
    st.caption(" · ".join(facts))
    if info.get("session_id"):
        st.page_link(pages.page("sessions"), label=f"Session {info['session_id']}", icon=":material/forum:",
                     query_params={"session_id": info["session_id"]})  # fmt: skip


def span_picker(trace: Trace, spans: pl.DataFrame) -> str:
    """The waterfall and the span tree; returns the selected span's id (the root at first)."""
    key = f"span-{trace.trace_id}"
    ids = spans["span_id"].to_list()
    if st.session_state.get(key) not in ids:
        st.session_state[key] = trace.info.get("root_span_id") if trace.info.get("root_span_id") in ids else ids[0]

    def clicked() -> None:  # a bar click selects that span in the tree
        chosen = st.session_state[WATERFALL].selection.get("span") or []
        if chosen and chosen[0].get("span_id") in ids:
            st.session_state[key] = chosen[0]["span_id"]

    st.altair_chart(waterfall(spans), key=WATERFALL, on_select=clicked, selection_mode=["span"])
    labels = dict(zip(ids, spans["label"].str.strip_chars_start().to_list()))
    types = dict(zip(ids, spans["span_type"]))
    picked: str = st.selectbox("Span", ids, key=key, format_func=lambda s: f"{labels[s]}  [{types[s]}]",
                               help="Or click its bar in the waterfall.")  # fmt: skip
    return picked


def span_panel(trace: Trace, row: dict[str, Any], spans: pl.DataFrame, costs: pl.DataFrame) -> None:
    span = Span(row)
    st.subheader(span.name)
    st.caption(" · ".join(str(v) for v in (span.span_type, span.status.status_code, units.duration(row["duration_ms"]),
                                           row.get("model"), row.get("provider")) if v))  # fmt: skip
    if span.status.status_code == "ERROR":
        st.error(span.status.description or "The span ended with status ERROR.", icon=":material/error:")
    cost = costs.filter(pl.col("span_id") == span.span_id)
    cells = st.columns(4)
    cells[0].metric("Input tokens", units.count(row["input_tokens"]))
    cells[1].metric("Output tokens", units.count(row["output_tokens"]))
    cells[2].metric("Cached input", units.count(row["cache_read_input_tokens"]))
    cells[3].metric("Span cost", units.usd(cost["cost_usd"].item() if cost.height else None))
    if cost.height and cost["unpriced_reason"].item():
        st.caption(f"Unpriced: {cost['unpriced_reason'].item()}")
    talk, attributes, events, verdicts = st.tabs(["Inputs and outputs", "Attributes", "Events", "Assessments"])
    with talk:
        st.markdown("**Inputs**")
        payload_view.show(row["inputs"], what="Inputs")
        st.markdown("**Outputs**")
        payload_view.show(row["outputs"], what="Outputs")
    with attributes:
        st.json(span.attributes, expanded=1)
        resource = parse_payload(row.get("resource_attributes"))
        if resource:
            with st.expander("Resource attributes"):
                st.json(resource, expanded=1)
    with events:
        show_events(span)
    with verdicts:
        show_assessments(trace, spans, span_id=span.span_id)


def show_events(span: Span) -> None:
    if not span.events:
        st.caption("No events on this span.")
    start = span.start_time_ns or 0
    for event in span.events:
        attrs = event.attributes
        at = f"+{units.duration(((event.timestamp or start) - start) / 1e6)}"
        if event.name == "exception":
            st.error(f"**{attrs.get('exception.type', 'Exception')}**: {attrs.get('exception.message', '')}  ({at})",
                     icon=":material/bug_report:")  # fmt: skip
            if attrs.get("exception.stacktrace"):
                with st.expander("Stack trace"):
                    st.code(attrs["exception.stacktrace"], language="python")
        else:
            st.markdown(f"**{event.name}** ({at})")
            if attrs:
                st.json(attrs, expanded=1)


def show_assessments(trace: Trace, spans: pl.DataFrame, *, span_id: str | None = None) -> None:
    """The trace's assessments (one span's with `span_id`), overridden ones marked."""
    rows = [a for a in trace.assessments if span_id is None or a["span_id"] == span_id]
    if not rows:
        where = " on this span." if span_id else " yet: run `spanlake jobs run scorers`, or add feedback below."
        st.caption("No assessments" + where)
        return
    names = dict(zip(spans["span_id"], spans["name"]))
    st.dataframe(
        pl.DataFrame([{
            "name": a["name"], "kind": a["kind"],
            "value": a["error_code"] or feedback_form.shown(a["value"]),
            "source": f"{a['source_type']} {a['source_id'] or ''}".strip(), "rationale": a["rationale"] or a["error_message"],
            "span": names.get(a["span_id"], a["span_id"]) if a["span_id"] else "(trace)",
            "in force": a["valid"], "created": a["created_at"],
        } for a in rows]),  # fmt: skip
        hide_index=True,
        column_config={"in force": st.column_config.CheckboxColumn(help="False: a later label overrides it.")},
    )


def feedback(trace: Trace, span_row: dict[str, Any]) -> None:
    """The human feedback form: name, value, rationale, reviewer; writes one HUMAN row."""
    names, problem = feedback_form.scorer_names()
    kinds = feedback_form.value_kinds()
    nonce = st.session_state.get("feedback_nonce", 0)  # a new nonce after a save gives a fresh form
    key = f"fb-{trace.trace_id}-{nonce}"
    pick, typed = st.columns(2)
    listed = pick.selectbox("Name", names, index=None, key=f"{key}-name", placeholder="a registered scorer",
                            help="The registered scorers (SPANLAKE_SCORERS_FILE).")  # fmt: skip
    own = typed.text_input("or a new name", key=f"{key}-own", placeholder="e.g. helpfulness").strip()
    name = own or listed
    if problem:
        st.caption(f"No registered scorers to offer: {problem}")
    default = kinds.get(name or "", "yes/no")
    kind = st.radio("Value kind", feedback_form.KINDS, index=feedback_form.KINDS.index(default), horizontal=True,
                    key=f"{key}-kind-{name}")  # fmt: skip
    value = feedback_form.value_input(kind, key=f"{key}-value-{kind}")
    about = st.radio("About", ["the trace", f"the selected span ({span_row['name']})"], horizontal=True, key=f"{key}-about")
    rationale = st.text_area("Rationale", key=f"{key}-rationale", placeholder="why (optional)")
    reviewer = feedback_form.reviewer_input()
    span_id = None if about == "the trace" else span_row["span_id"]
    old = feedback_form.current_verdict(trace, name, span_id) if name else None
    if old is not None:
        st.caption(f"Replaces the current {name} = {feedback_form.shown(old['value'])} "
                   f"({old['source_type']} {old['source_id'] or ''}).")  # fmt: skip
    if st.button("Save feedback", type="primary", icon=":material/save:", key="feedback-save"):
        try:
            said = feedback_form.record(trace, name=name or "", value=value, reviewer=reviewer, rationale=rationale,
                                        span_id=span_id)  # fmt: skip
        except SpanlakeError as exc:
            st.error(str(exc))
        else:
            st.session_state["feedback_nonce"] = nonce + 1
            feedback_form.saved(said)


st.title("Trace detail")
feedback_form.flash()
with data.page_errors():
    if data.no_traces_notice():
        st.stop()
    pasted = st.text_input("Trace id", key="trace_id", bind="query-params", placeholder="32 hex digits",
                           help="Paste a trace id, or open one from the Traces page.")  # fmt: skip
    if not pasted:
        st.info("Paste a trace id above, or open a trace from the Traces page.", icon=":material/search:")
        st.page_link(pages.page("traces"), label="Traces", icon=":material/search:")
        st.stop()
    trace_id = one_trace.clean_id(pasted)
    if trace_id is None:
        st.error(f"{pasted.strip()!r} is not a trace id: a trace id is 32 hexadecimal digits.", icon=":material/error:")
        st.stop()
    trace = one_trace.load(trace_id)
    if trace is None:
        warehouse, _ = data.location()
        st.warning(f"No trace {trace_id} in the warehouse at {warehouse}. It may not be ingested yet (is "
                   "`spanlake ingest` running?) or it is older than the retention.", icon=":material/search_off:")  # fmt: skip
        st.stop()
    costs, total = one_trace.costs_of(trace)
    spans = one_trace.span_frame(trace, costs)
    header(trace, total)
    if spans.is_empty():
        st.info("This trace has no spans stored (they may have expired).")
        st.stop()
    selected = span_picker(trace, spans)
    tree, panel = st.columns([2, 3])
    with tree:
        st.markdown("**Span tree**")
        one_trace.span_list(spans)
    with panel:
        span_panel(trace, next(s for s in trace.spans if s["span_id"] == selected), spans, costs)
    verdicts, form = st.columns([3, 2])
    with verdicts:
        st.subheader("Assessments")
        show_assessments(trace, spans)
    with form:
        st.subheader("Add feedback")
        feedback(trace, next(s for s in trace.spans if s["span_id"] == selected))
