"""Sessions and users: traces, tokens, cost, errors, first and last seen per session and per user;
a session opens as a conversation (each turn's request and response, linking to Trace detail).

Cost is trace_costs joined on the traces in the filters, so a session's cost and its traces are
the same set. The session shown is `?session=` in the URL; picking a user sets the sidebar's user.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import polars as pl
import streamlit as st

from spanlake.dashboard import data, global_filters, pages, units
from spanlake.dashboard.global_filters import Filters

LIMIT = 500  # rows listed, most recently seen first
SESSIONS_TABLE, USERS_TABLE = "sessions_table", "users_table"


def _traces(trace_info: pl.LazyFrame, trace_costs: pl.LazyFrame, filters: Filters) -> pl.LazyFrame:
    """The traces in the filters with their cost (trace_costs has trace_info's time columns)."""
    in_range = dataclasses.replace(filters, service=None, environment=None, model=None, user=None).trace_expr()
    costs = trace_costs.filter(in_range).select("trace_id", "day", "cost_usd")
    traces = trace_info.filter(filters.trace_expr()).select(
        "trace_id", "day", "request_time", "state", "total_tokens", "session_id", "user_id"
    )
    return traces.join(costs, on=["trace_id", "day"], how="left")


def _stats() -> list[pl.Expr]:
    return [
        pl.len().alias("traces"),
        (pl.col("state") == "ERROR").sum().alias("errors"),
        pl.col("total_tokens").sum().alias("tokens"),
        pl.when(pl.col("cost_usd").count() > 0).then(pl.col("cost_usd").sum()).alias("cost_usd"),
        pl.col("request_time").min().alias("first_seen"),
        pl.col("request_time").max().alias("last_seen"),
    ]


@data.loader("trace_info", "trace_costs")
def groups(trace_info: pl.LazyFrame, trace_costs: pl.LazyFrame, filters: Filters) -> dict[str, Any]:
    """Per session and per user: the LIMIT most recently seen, and how many there are in all."""
    traces = _traces(trace_info, trace_costs, filters)
    sessions = (
        traces.drop_nulls("session_id")
        .group_by("session_id")
        .agg(pl.col("user_id").drop_nulls().first().alias("user_id"), *_stats())
    )
    users = (
        traces.drop_nulls("user_id")
        .group_by("user_id")
        .agg(pl.col("session_id").n_unique().alias("sessions"), *_stats())
    )
    frames = pl.collect_all([
        sessions.sort("last_seen", "traces", descending=True).head(LIMIT),
        users.sort("last_seen", "traces", descending=True).head(LIMIT),
        sessions.select(pl.len()), users.select(pl.len()),
    ])  # fmt: skip
    return {"sessions": frames[0], "users": frames[1], "n_sessions": frames[2].item(), "n_users": frames[3].item()}


@data.loader("trace_info")
def conversation(trace_info: pl.LazyFrame, filters: Filters, session_id: str) -> pl.DataFrame:
    """A session's traces in the filters, oldest first."""
    return (
        trace_info.filter(filters.trace_expr(), pl.col("session_id") == session_id)
        .select(
            "trace_id", "request_time", "state", "duration_ms", "total_tokens", "request_preview", "response_preview"
        )  # fmt: skip
        .sort("request_time", "trace_id")
        .collect()
    )


def readable(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        units.column("tokens", units.count),
        units.column("cost_usd", units.usd).alias("cost"),
    ).drop("cost_usd")


def selected(table_key: str, frame: pl.DataFrame, column: str) -> tuple[str | None, bool]:
    """The table, and the `column` value of its selected row with whether the selection is new
    since the last rerun (so a value typed after a pick is not overwritten by the old pick)."""
    event = st.dataframe(readable(frame), key=table_key, on_select="rerun", selection_mode="single-row",
                         hide_index=True, width="stretch")  # fmt: skip
    rows = event.selection.rows
    value = frame[column][rows[0]] if rows else None
    seen = f"{table_key}_picked"
    new = value != st.session_state.get(seen)
    st.session_state[seen] = value
    return value, new


def set_user(user_id: str) -> None:
    st.session_state["user"] = user_id  # the sidebar's (URL-bound) User filter


def markdown_text(text: str | None) -> str:
    """Previews as text in markdown: `$` would start a formula."""
    return (text or "*(nothing recorded)*").replace("$", "\\$")


def show_conversation(filters: Filters, session_id: str) -> None:
    turns = conversation(filters, session_id)
    if turns.is_empty():
        st.info(f"No traces of session {session_id!r} in {filters.period} with these filters: "
                "check the id or widen the time range in the sidebar.")  # fmt: skip
        return
    st.caption(f"{turns.height} turns, {units.count(float(turns['total_tokens'].sum()))} tokens")
    for turn in turns.iter_rows(named=True):
        with st.chat_message("user"):
            st.markdown(markdown_text(turn["request_preview"]))
        with st.chat_message("assistant"):
            st.markdown(markdown_text(turn["response_preview"]))
            status = "failed · " if turn["state"] == "ERROR" else ""
            st.page_link(pages.page("trace"), query_params={"trace_id": turn["trace_id"]},
                         label=f"{status}{units.duration(turn['duration_ms'])} · {turn['request_time']:%Y-%m-%d %H:%M:%S} UTC"
                               " · open trace", icon=":material/account_tree:")  # fmt: skip


def sessions_tab(filters: Filters, found: dict[str, Any]) -> None:
    sessions: pl.DataFrame = found["sessions"]
    st.caption(f"{units.count(found['n_sessions'])} sessions in {filters.period}"
               + (f"; the {LIMIT} seen last are listed" if found["n_sessions"] > LIMIT else "")
               + " · select one to read it")  # fmt: skip
    picked, new = selected(SESSIONS_TABLE, sessions, "session_id")
    if picked is not None and new:  # before the box is made: its state may still be set
        st.session_state["session"] = picked
    chosen = st.text_input("Session", key="session", bind="query-params", placeholder="session id")
    if chosen.strip():
        show_conversation(filters, chosen.strip())


def users_tab(filters: Filters, found: dict[str, Any]) -> None:
    users: pl.DataFrame = found["users"]
    st.caption(f"{units.count(found['n_users'])} users in {filters.period}"
               + (f"; the {LIMIT} seen last are listed" if found["n_users"] > LIMIT else "")
               + " · select one to show only that user's traces on every page")  # fmt: skip
    user_id, _ = selected(USERS_TABLE, users, "user_id")
    if user_id is not None:
        st.button(f"Show only {user_id} on every page", key="sessions_set_user", on_click=set_user, args=(user_id,),
                  icon=":material/filter_alt:", help="Sets the sidebar's User filter (and the URL).")  # fmt: skip


st.title("Sessions and users")
with data.page_errors():
    if data.no_traces_notice():
        st.stop()
    filters = global_filters.current()
    found = groups(filters)
    if found["n_sessions"] == 0 and found["n_users"] == 0:
        st.info(f"No traces with a session or user id in {filters.period} with these filters: widen the "
                "time range, or record session.id / user.id on your spans (OpenInference, MLflow and the GenAI "
                "conventions' attributes are read).")  # fmt: skip
        st.stop()
    if data.missing("trace_costs"):
        st.caption("Cost appears after `spanlake jobs run costs` has run.")
    sessions, users = st.tabs(["Sessions", "Users"])
    with sessions:
        sessions_tab(filters, found)
    with users:
        users_tab(filters, found)
