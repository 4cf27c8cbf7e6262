"""Which spans' tokens count towards a trace's totals: the one statement of the rule, used by
ingest (within a batch and across batches), and by anyone recomputing totals from span_data.

A trace's token totals add up its model-call spans (LLM, CHAT_MODEL, EMBEDDING), except a
model-call span that wraps another model-call span reporting usage: a framework's LLM span
around the SDK's span describes one call, and only the inner one counts. A total is null when
no model-call span of the trace reports that count.
"""

from __future__ import annotations

import polars as pl

from spanlake.tables.vocabulary import MODEL_CALL_TYPES

TOKEN_COLUMNS = ("input_tokens", "output_tokens", "total_tokens")
# What the rule reads of a span (span_data's column names).
RULE_COLUMNS = ("trace_id", "span_id", "parent_span_id", "span_type", *TOKEN_COLUMNS)


def is_model_call() -> pl.Expr:
    return pl.col("span_type").is_in(sorted(MODEL_CALL_TYPES))


def reports_usage() -> pl.Expr:
    return pl.col("input_tokens").is_not_null() | pl.col("output_tokens").is_not_null()


def counts_tokens(spans: pl.DataFrame) -> pl.Series:
    """Per row of `spans` (RULE_COLUMNS at least): whether its tokens count, judged among the
    spans of `spans` only (a span's children elsewhere are not seen)."""
    wrapped = (
        spans.filter(is_model_call() & reports_usage())
        .select("trace_id", span_id="parent_span_id")
        .drop_nulls()
        .unique()
        .with_columns(_wraps_call=pl.lit(True))
    )
    flagged = spans.select("trace_id", "span_id", "span_type").join(
        wrapped, on=["trace_id", "span_id"], how="left", maintain_order="left"
    )
    return flagged.select(counts=is_model_call() & pl.col("_wraps_call").is_null()).to_series()


def token_sums(counts: pl.Expr) -> list[pl.Expr]:
    """The totals as aggregations of a group_by per trace, given which rows count."""
    return [
        pl.when((is_model_call() & pl.col(c).is_not_null()).any())
        .then(pl.col(c).filter(counts).sum())
        .otherwise(None)
        .alias(c)
        for c in TOKEN_COLUMNS
    ]


def token_totals(spans: pl.DataFrame) -> pl.DataFrame:
    """Per trace_id, the token totals of `spans` computed from scratch by the rule."""
    counted = spans.with_columns(_counts=counts_tokens(spans))
    return counted.group_by("trace_id", maintain_order=True).agg(token_sums(pl.col("_counts")))
