"""Alerts: what the monitors fire, from the `alerts` table (one row per state transition).

The current state of a (rule, scope) is its newest row, whatever its age: an alert that fired a
week ago and never resolved still fires. The history lists the transitions in the time range.
A service, environment, model or user filter hides the scopes that name another value of it.
"""

from __future__ import annotations

import re

import polars as pl
import streamlit as st

from spanlake.dashboard import data, global_filters, units
from spanlake.dashboard.global_filters import Filters

COLUMNS = ("rule", "state", "metric", "scope", "window", "observed", "comparison", "threshold", "since",
           "window_start", "window_end", "notified")  # fmt: skip
# Global filter field -> the scope keys the monitors write for it (`service=support-bot`, `user_id=u1`).
SCOPE_KEYS = {"service": ("service", "service_name"), "environment": ("environment",), "model": ("model",),
              "user": ("user_id", "user")}  # fmt: skip


def _in_scope(filters: Filters) -> pl.Expr:
    """Rows whose scope does not name another value of a dimension the filters fix."""
    terms = [pl.lit(True)]
    for field, keys in SCOPE_KEYS.items():
        value = getattr(filters, field)
        if not value:
            continue
        for key in keys:
            names_key = pl.col("scope").str.contains(f"(^|,)\\s*{key}=")
            names_value = pl.col("scope").str.contains(f"(^|,)\\s*{key}={re.escape(value)}\\s*(,|$)")
            terms.append(~names_key | names_value)
    return pl.all_horizontal(terms)


@data.loader("alerts")
def alerts(rows: pl.LazyFrame, filters: Filters) -> dict[str, pl.DataFrame]:
    """The current state per (rule, scope), firing first, and the transitions in the range, newest first."""
    scoped = rows.filter(_in_scope(filters))
    current = (
        scoped.sort("since", "alert_id")
        .group_by("rule", "scope")
        .last()
        .sort(pl.col("state") != "FIRING", pl.col("since"), descending=[False, True])
        .select(*COLUMNS)
    )
    history = scoped.filter(filters.time_expr("since")).sort("since", descending=True).head(500).select(*COLUMNS)
    found = pl.collect_all([current, history])
    return {"current": found[0], "history": found[1]}


def value(metric: str, number: float | None) -> str:
    """A monitor value in the unit its metric name says (cost in $, *_ms as a duration, rates in %)."""
    if metric.endswith("_usd") or metric.startswith("cost"):
        return units.usd(number)
    if metric.endswith("_ms"):
        return units.duration(number)
    if metric.endswith("rate") or metric.endswith("_share"):
        return units.percent(number)
    return units.count(number) if number is None or abs(number) >= 1000 else f"{number:g}"


def readable(frame: pl.DataFrame) -> pl.DataFrame:
    """observed and threshold in their units, and the condition that fired, as one line."""
    shown = [
        (value(m, o), value(m, t), f"{value(m, o)} {c} {value(m, t)}")
        for m, o, t, c in zip(frame["metric"], frame["observed"], frame["threshold"], frame["comparison"])
    ]
    return frame.with_columns(
        observed=pl.Series([s[0] for s in shown], dtype=pl.String),
        threshold=pl.Series([s[1] for s in shown], dtype=pl.String),
        condition=pl.Series([s[2] for s in shown], dtype=pl.String),
    ).select("rule", "state", "condition", pl.exclude("rule", "state", "condition"))


def _firing(current: pl.DataFrame) -> None:
    firing = current.filter(pl.col("state") == "FIRING")
    cells = st.columns(3)
    cells[0].metric("Firing", units.count(firing.height))
    cells[1].metric("Resolved", units.count(current.height - firing.height))
    cells[2].metric("Rules", units.count(current["rule"].n_unique()))
    if firing.is_empty():
        st.success("Nothing fires now.", icon=":material/check:")
    for row in firing.head(20).iter_rows(named=True):
        st.error(f"**{row['rule']}** ({row['scope']}): {row['metric']} over {row['window']} is "
                 f"{value(row['metric'], row['observed'])} {row['comparison']} {value(row['metric'], row['threshold'])}, "
                 f"since {row['since']:%Y-%m-%d %H:%M} UTC", icon=":material/notifications_active:")  # fmt: skip


st.title("Alerts")
with data.page_errors():
    if data.missing("alerts"):
        st.info("No monitor has run yet: add `[[monitors]]` rules to the jobs config and run "
                "`spanlake jobs run monitors` (or `spanlake jobs run all --every 60`), then reload.",
                icon=":material/notifications:")  # fmt: skip
        st.stop()
    filters = global_filters.current()
    found = alerts(filters)
    if found["current"].is_empty():
        st.info("The monitors have recorded no alert for these filters yet.", icon=":material/notifications:")
        st.stop()
    _firing(found["current"])
    st.subheader("Current state per rule and scope")
    st.dataframe(readable(found["current"]), hide_index=True)
    st.subheader("History")
    if found["history"].is_empty():
        st.info(f"No alert changed state in this time range ({filters.range}).")
    else:
        st.dataframe(readable(found["history"]), hide_index=True)
