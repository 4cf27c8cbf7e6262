"""The sidebar's global filters: time range, service, environment, model and user. Every page
applies them; they live in the URL (widgets bound to query parameters), so a link shares a view.

A page reads them with `current()` and applies them to the table it reads: `trace_expr()` on
trace_info (and tables with the same column names), `rollup_expr()` on cost_rollups, or
`filter_string()` for spanlake.query.search_traces.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl
import streamlit as st

from spanlake.dashboard import data

# label -> length; None: everything. The start is floored to the minute, so loaders cached on the
# filters hit for a minute at a time instead of missing on every rerun.
RANGES: dict[str, dt.timedelta | None] = {
    "1h": dt.timedelta(hours=1),
    "6h": dt.timedelta(hours=6),
    "24h": dt.timedelta(days=1),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
    "90d": dt.timedelta(days=90),
    "all": None,
}
DEFAULT_RANGE = "24h"
ANY = ""  # the "no filter" choice of a selectbox


@dataclass(frozen=True)
class Filters:
    range: str
    start: dt.datetime | None  # None: from the beginning
    end: dt.datetime | None  # None: up to now (and whatever arrives)
    service: str | None = None
    environment: str | None = None
    model: str | None = None
    user: str | None = None

    @property
    def previous(self) -> Filters | None:
        """The same filters over the period just before (for "change against the previous period")."""
        if self.start is None:
            return None
        end = self.end or _minute()
        return Filters(self.range, self.start - (end - self.start), self.start,
                       self.service, self.environment, self.model, self.user)  # fmt: skip

    @property
    def period(self) -> str:
        """The range in words, for messages: "the last 24h", "all time"."""
        return "all time" if self.start is None else f"the last {self.range}"

    @property
    def granularity(self) -> str:
        """A Polars truncate interval that gives a readable number of points for the range."""
        length = (self.end or _minute()) - self.start if self.start else None
        if length is None or length > dt.timedelta(days=14):
            return "1d"
        if length > dt.timedelta(days=2):
            return "1h"
        if length > dt.timedelta(hours=6):
            return "15m"
        return "1m"

    @property
    def rollup_window(self) -> str:
        """Which cost_rollups rows to read: day rows for a daily chart (fewer rows), else hour rows
        (a range's first, partial day is then not counted whole)."""
        return "day" if self.granularity == "1d" else "hour"

    def _time(self, column: str) -> list[pl.Expr]:
        out = []
        if self.start is not None:
            out += [pl.col("day") >= self.start.date(), pl.col(column) >= self.start]
        if self.end is not None:
            out += [pl.col("day") <= self.end.date(), pl.col(column) < self.end]
        return out

    def trace_expr(self, time_column: str = "request_time") -> pl.Expr:
        """The filters on trace_info (day partitions named, for pruning)."""
        terms = self._time(time_column)
        if self.service:
            terms.append(pl.col("service_name") == self.service)
        if self.environment:
            terms.append(pl.col("environment") == self.environment)
        if self.model:
            terms.append(pl.col("models").list.contains(self.model))
        if self.user:
            terms.append(pl.col("user_id") == self.user)
        return pl.all_horizontal(terms) if terms else pl.lit(True)

    def time_expr(self, time_column: str) -> pl.Expr:
        """The time range alone, for tables without the trace dimensions (ingest_batches, job_runs, alerts)."""
        terms = self._time(time_column)
        return pl.all_horizontal(terms) if terms else pl.lit(True)

    def rollup_expr(self, time_column: str = "window_start") -> pl.Expr:
        """The filters on cost_rollups (and span_costs, with time_column start_time)."""
        terms = self._time(time_column)
        for column, value in (("service", self.service), ("environment", self.environment),
                              ("model", self.model), ("user_id", self.user)):  # fmt: skip
            if value:
                terms.append(pl.col(column) == value)
        return pl.all_horizontal(terms) if terms else pl.lit(True)

    def filter_string(self) -> str:
        """The filters in search_traces' filter language (the time range goes in start/end_time)."""
        terms = []
        for field, value in (("service_name", self.service), ("environment", self.environment),
                             ("user_id", self.user)):  # fmt: skip
            if value:
                terms.append(f"trace.{field} = {_quote(value)}")
        if self.model:
            terms.append(f"span.model = {_quote(self.model)}")
        return " AND ".join(terms)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


quote = _quote  # a string literal of the filter language, for pages that build filters too


def _minute() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)


def sidebar() -> None:
    """The filter widgets, bound to the URL. Choices come from trace_info (cached by its version)."""
    choices = data.filter_choices()
    with st.sidebar:
        st.selectbox("Time range", list(RANGES), index=list(RANGES).index(DEFAULT_RANGE), key="range",
                     bind="query-params", help="Every page shows this period, ending now.")  # fmt: skip
        for key, label in (("service", "Service"), ("environment", "Environment"), ("model", "Model")):
            st.selectbox(label, [ANY, *choices.get(key, [])], key=key, bind="query-params",
                         format_func=lambda v: v or "all")  # fmt: skip
        st.text_input("User", key="user", bind="query-params", placeholder="user id",
                      help="Only this user's traces (trace_info.user_id).")  # fmt: skip


def current() -> Filters:
    """The filters as the sidebar holds them now."""
    state = st.session_state
    label = state.get("range") or DEFAULT_RANGE
    length = RANGES.get(label, RANGES[DEFAULT_RANGE])
    start = None
    if length is not None:
        start = _minute() - length
    return Filters(
        range=label, start=start, end=None,
        service=state.get("service") or None, environment=state.get("environment") or None,
        model=state.get("model") or None, user=(state.get("user") or "").strip() or None,
    )  # fmt: skip
