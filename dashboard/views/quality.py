"""Quality: pass rate (bool and yes/no verdicts) or mean (numbers) per scorer over time, value
distributions, the worst traces with their rationales, human feedback beside automated scores,
and what the LLM judges cost.

Results are the valid feedback rows of `assessments` (human overrides resolved, as
spanlake.query.scan_assessments resolves them) of the traces in the global filters; a result
counts at its trace's request_time, so a re-score does not move it in time.
"""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from spanlake.dashboard import data, global_filters, pages, units
from spanlake.dashboard.global_filters import Filters
from spanlake.query.assessments import assessments_since, value_as_number, with_validity

SOURCES = ("CODE", "LLM_JUDGE", "HUMAN")
WORST = 50  # rows of the worst-traces list


def _results(assessments: pl.LazyFrame, trace_info: pl.LazyFrame, filters: Filters) -> pl.LazyFrame:
    """Valid feedback of the filtered traces, with the value as a number and as a label."""
    first_day = filters.start.date() if filters.start else None
    # Overrides resolve over every row from the traces' first day on (replacing rows come later).
    rows = with_validity(assessments.filter(*assessments_since(first_day)))
    rows = rows.filter(pl.col("valid"), pl.col("kind") == "feedback")
    traces = trace_info.filter(filters.trace_expr()).select("trace_id", "request_time", "root_span_name")
    label = (
        pl.when(pl.col("value_type") == "bool").then(pl.col("value_bool").cast(pl.String))
        .when(pl.col("value_type") == "string").then(pl.col("value_string"))
        .when(pl.col("value_type") == "number").then(pl.col("value_number").cast(pl.String))
        .when(pl.col("value_type") == "json").then(pl.col("value_json"))
        .otherwise(pl.lit("error: ") + pl.col("error_code").fill_null("unknown"))
    )  # fmt: skip
    return rows.join(traces, on="trace_id").with_columns(number=value_as_number(), label=label)


def _scored(value: pl.Expr) -> list[pl.Expr]:
    """Pass rate for scorers whose values are verdicts, mean for numeric ones (never both)."""
    numeric = (pl.col("value_type") == "number").any()
    return [pl.when(~numeric).then(value).alias("pass_rate"), pl.when(numeric).then(value).alias("mean")]


@data.loader("assessments", "trace_info")
def overview(assessments: pl.LazyFrame, trace_info: pl.LazyFrame, filters: Filters) -> dict[str, pl.DataFrame]:
    """Per scorer: its figure, over time, by source, and its value counts (one scan, shared)."""
    rows = _results(assessments, trace_info, filters)
    value = pl.col("number").mean()
    summary = (
        rows.group_by(scorer="name")
        .agg(*_scored(value), results=pl.len(), errors=pl.col("error_code").is_not_null().sum(),
             traces=pl.col("trace_id").n_unique(), sources=pl.col("source_type").unique().sort().str.join(", "))
        .sort("scorer")
    )  # fmt: skip
    series = (
        rows.group_by(time=pl.col("request_time").dt.truncate(filters.granularity), scorer=pl.col("name"))
        .agg(value=value, results=pl.col("number").count(), numeric=(pl.col("value_type") == "number").any())
        .sort("time")
    )
    by_source = rows.group_by(scorer="name", source="source_type").agg(value=value, results=pl.len())
    counts = rows.group_by(scorer="name", value="label", numeric=pl.col("value_type") == "number").agg(
        number=pl.col("number").first(), results=pl.len()
    )
    human = (
        rows.filter(pl.col("source_type") == "HUMAN")
        .sort("created_at", descending=True)
        .head(WORST)
        .select("trace_id", scorer="name", value="label", rationale="rationale", reviewer="source_id",
                at="created_at")
    )  # fmt: skip
    found = pl.collect_all([summary, series, by_source, counts, human])
    return dict(zip(("summary", "series", "by_source", "counts", "human"), found))


@data.loader("assessments", "trace_info")
def worst(
    assessments: pl.LazyFrame, trace_info: pl.LazyFrame, filters: Filters, scorer: str, higher_is_better: bool
) -> pl.DataFrame:
    """The traces with the scorer's worst values (lowest first when higher is better), with rationales."""
    return (
        _results(assessments, trace_info, filters)
        .filter(pl.col("name") == scorer, pl.col("number").is_not_null())
        .sort("number", "request_time", descending=[not higher_is_better, True])
        .head(WORST)
        .select(
            "trace_id",
            value="label",
            rationale="rationale",
            source="source_type",
            request_time="request_time",
            root_span="root_span_name",
        )  # fmt: skip
        .collect()
    )


@data.loader("cost_rollups")
def judge_spend(cost_rollups: pl.LazyFrame, filters: Filters) -> pl.DataFrame:
    """What the LLM judges cost per time bucket and judge model (no service or user: judges have none)."""
    return (
        cost_rollups.filter(
            pl.col("window") == filters.rollup_window, pl.col("kind") == "judge", filters.time_expr("window_start")
        )  # fmt: skip
        .group_by(time=pl.col("window_start").dt.truncate(filters.granularity), judge_model=pl.col("model"))
        .agg(pl.col("cost_usd").sum(), results=pl.col("spans").sum(), unpriced=pl.col("unpriced_spans").sum())
        .sort("time")
        .collect()
    )


def with_links(frame: pl.DataFrame) -> pl.DataFrame:
    links = frame.with_columns(trace=pl.col("trace_id").map_elements(pages.trace_url, return_dtype=pl.String))
    return links.select("trace", pl.exclude("trace", "trace_id"))


TRACE_LINK = st.column_config.LinkColumn("trace", display_text=r"trace_id=(\w+)", help="Opens Trace detail.")


def _summary(found: dict[str, pl.DataFrame], filters: Filters) -> None:
    summary = found["summary"]
    before = overview(filters.previous)["summary"] if filters.previous else None
    if before is not None and not before.is_empty():
        previous = before.select("scorer", previous=pl.coalesce("pass_rate", "mean"))
        summary = summary.join(previous, on="scorer", how="left")
    st.dataframe(
        summary, hide_index=True,
        column_config={
            "pass_rate": st.column_config.NumberColumn("pass rate", format="percent",
                                                       help="Share of results that are true or yes."),
            "previous": st.column_config.NumberColumn("previous period", format="%.3f",
                                                      help="Pass rate or mean over the period before."),
            "mean": st.column_config.NumberColumn("mean", format="%.3f", help="Mean of a numeric scorer."),
        },
    )  # fmt: skip


def _over_time(series: pl.DataFrame) -> None:
    for numeric, title in ((False, "pass rate"), (True, "mean")):
        points = series.filter(pl.col("numeric") == numeric)
        if points.is_empty():
            continue
        axis = alt.Axis(format="%") if not numeric else alt.Axis()
        chart = (
            alt.Chart(points)
            .mark_line(point=True)
            .encode(x=alt.X("time:T", title=None), y=alt.Y("value:Q", title=title, axis=axis),
                    color=alt.Color("scorer:N"),
                    tooltip=["time:T", "scorer:N", alt.Tooltip("value:Q", title=title, format=".3f"),
                             alt.Tooltip("results:Q", format=",")])
            .interactive(bind_y=False)
        )  # fmt: skip
        st.altair_chart(chart, width="stretch")


def _distribution(counts: pl.DataFrame, scorer: str) -> None:
    mine = counts.filter(pl.col("scorer") == scorer)
    if mine["numeric"].any():
        x = alt.X("number:Q", bin=alt.Bin(maxbins=30), title=scorer)
        mine = mine.filter(pl.col("numeric"))
    else:
        x = alt.X("value:N", title=scorer, sort="-y")
    chart = (
        alt.Chart(mine)
        .mark_bar()
        .encode(
            x=x, y=alt.Y("sum(results):Q", title="results"), tooltip=[alt.Tooltip("sum(results):Q", title="results")]
        )
    )
    st.altair_chart(chart, width="stretch")


def _human(found: dict[str, pl.DataFrame]) -> None:
    st.subheader("Human feedback beside automated scores")
    by_source = found["by_source"]
    if by_source.filter(pl.col("source") == "HUMAN").is_empty():
        st.info("No human feedback in this range yet: label traces in the Review queue or on Trace detail.",
                icon=":material/rate_review:")  # fmt: skip
        return
    side = by_source.pivot("source", index="scorer", values=["value", "results"], aggregate_function="first")
    st.dataframe(side.sort("scorer"), hide_index=True)
    st.caption("value_*: pass rate or mean per source; results_*: how many results. A human override replaces "
               "the result it overrides, so that result is counted only as the human's.")  # fmt: skip
    st.dataframe(with_links(found["human"]), hide_index=True, column_config={"trace": TRACE_LINK})


def _judges(filters: Filters) -> None:
    st.subheader("Judge spend")
    if data.job_never_ran_notice("cost_rollups", "spanlake jobs run costs"):
        return
    spend = judge_spend(filters)
    if spend.is_empty():
        st.info(f"No LLM judge results were costed in this time range ({filters.range}).", icon=":material/gavel:")
        return
    cells = st.columns(2)
    cells[0].metric("Judge cost", units.usd(spend.select(pl.col("cost_usd").sum()).item()))
    cells[1].metric("Judge results", units.count(spend.select(pl.col("results").sum()).item()))
    chart = (
        alt.Chart(spend)
        .mark_bar()
        .encode(x=alt.X("time:T", title=None), y=alt.Y("cost_usd:Q", title="cost (USD)", stack=True),
                color=alt.Color("judge_model:N", title="judge model"),
                tooltip=["time:T", "judge_model:N", alt.Tooltip("cost_usd:Q", format="$,.4f"), "results:Q"])
        .interactive(bind_y=False)
    )  # fmt: skip
    st.altair_chart(chart, width="stretch")
    st.caption("Judges have no service or user: only the time range applies here.")


st.title("Quality")
with data.page_errors():
    if data.no_traces_notice() or data.job_never_ran_notice("assessments", "spanlake jobs run scorers"):
        st.stop()
    filters = global_filters.current()
    found = overview(filters)
    if found["summary"].is_empty():
        st.info(f"No scorer results for the traces in this time range ({filters.range}) with these filters: widen the time "
                "range, or run `spanlake jobs run scorers` if traces arrived since it last ran.")  # fmt: skip
        st.stop()
    _summary(found, filters)
    _over_time(found["series"])
    scorers = found["summary"]["scorer"].to_list()
    left, right = st.columns([1, 2])
    scorer = left.selectbox("Scorer", scorers, key="quality_scorer")
    higher_is_better = left.toggle("Higher is better", value=True, key="quality_higher",
                                   help="Off for scorers whose true/high value is bad (trace_failed, pii_detected).")  # fmt: skip
    with right:
        _distribution(found["counts"], scorer)
    st.subheader(f"Worst traces by {scorer}")
    st.dataframe(with_links(worst(filters, scorer, higher_is_better)), hide_index=True,
                 column_config={"trace": TRACE_LINK})  # fmt: skip
    _human(found)
    _judges(filters)
