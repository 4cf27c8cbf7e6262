"""The assessments read layer: `scan_assessments`, the `assessments` rows with human overrides
resolved, which is what every quality figure (dashboards, monitors, `feedback.` filters) reads.

A row whose `overrides` names another row replaces it: the replaced row is no longer valid, so
a figure counts the override instead of the verdict it replaces, never both. Chains resolve to
their last row (A <- B <- C leaves only C valid); of several rows replacing the same one, the
latest (created_at, then assessment_id) is valid.

The value sits in one of four typed columns, named by `value_type` (null on error):

    bool -> value_bool, number -> value_number (Float64), string -> value_string, json -> value_json

`assessment_value(row)` reads it from a row dict; `value_as_number()` is an expression for
rates and means (numbers as they are, bools and yes/no verdicts as 1.0 / 0.0).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Any

import polars as pl

from spanlake.errors import FilterError
from spanlake.query.location import open_if_exists, warehouse_location

__all__ = [
    "ASSESSMENT_KINDS", "BOOL_WORDS", "VALUE_COLUMNS", "assessment_value", "assessments_since", "scan_assessments",
    "trace_assessments", "value_as_number", "with_validity",
]  # fmt: skip

ASSESSMENT_KINDS = ("feedback", "expectation")
VALUE_COLUMNS = {"bool": "value_bool", "number": "value_number", "string": "value_string", "json": "value_json"}
# Verdict words that stand for a bool: `feedback.x = 'yes'` also matches a True, and a rate counts "yes" as 1.
BOOL_WORDS = {"true": True, "yes": True, "false": False, "no": False}
# An assessment is written after its trace started: a scorer, judge or reviewer reads the trace
# first. The day of created_at is therefore on or after the trace's day; one day of slack covers
# clocks that disagree (the application's, which set request_time, and the job's).
CLOCK_SLACK = dt.timedelta(days=1)


def assessments_since(trace_day: dt.date | None) -> list[pl.Expr]:
    """Partition predicates for the assessments of traces whose `day` is `trace_day` or later."""
    return [] if trace_day is None else [pl.col("day") >= pl.lit(trace_day - CLOCK_SLACK)]


def with_validity(rows: pl.LazyFrame) -> pl.LazyFrame:
    """`rows` plus a boolean `valid`: false for a row another row of `rows` replaces. `rows` must
    hold the replacing rows too (all rows of a trace, or of a day range from a trace's day on)."""
    replacing = rows.filter(pl.col("overrides").is_not_null()).select("assessment_id", "overrides", "created_at")
    latest = replacing.group_by("overrides").agg(
        pl.col("assessment_id").sort_by("created_at", "assessment_id").last().alias("latest")
    )
    superseded = replacing.join(latest, on="overrides").filter(pl.col("assessment_id") != pl.col("latest"))
    invalid = pl.concat(
        [replacing.select(pl.col("overrides").alias("assessment_id")), superseded.select("assessment_id")]
    ).unique()
    return rows.join(invalid.with_columns(valid=pl.lit(False)), on="assessment_id", how="left").with_columns(
        pl.col("valid").fill_null(True)
    )


def scan_assessments(
    *,
    warehouse: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    valid_only: bool = True,
    kind: str | None = None,
    created_since: dt.datetime | None = None,
) -> pl.LazyFrame:
    """The `assessments` rows (its columns plus `valid`) at the table's latest version, as a
    LazyFrame. `valid_only` leaves out every row another row overrides; `kind` keeps only
    "feedback" or "expectation" rows; `created_since` only rows created from then on, reading
    only their day partitions (an override is created after the row it replaces, so overrides
    still resolve). A warehouse where nothing was scored yet reads as empty.

        from spanlake.query import scan_assessments, value_as_number
        scan_assessments(kind="feedback").group_by("name").agg(pass_rate=value_as_number().mean()).collect()
    """
    if kind is not None and kind not in ASSESSMENT_KINDS:
        raise FilterError(f"kind must be one of {', '.join(ASSESSMENT_KINDS)} or None, not {kind!r}")
    warehouse, options = warehouse_location(warehouse, storage_options)
    _, rows = open_if_exists("assessments", warehouse, options)
    if created_since is not None:
        since = pl.lit(created_since.astimezone(dt.timezone.utc))
        rows = rows.filter(pl.col("day") >= pl.lit(created_since.astimezone(dt.timezone.utc).date()),
                           pl.col("created_at") >= since)  # fmt: skip
    rows = with_validity(rows)  # over every kind: an override is resolved before anything is left out
    if valid_only:
        rows = rows.filter(pl.col("valid"))
    return rows if kind is None else rows.filter(pl.col("kind") == kind)


def trace_assessments(
    trace_id: str, trace_day: dt.date | None, warehouse: str, storage_options: Mapping[str, str]
) -> pl.DataFrame:
    """One trace's assessments with `valid`, oldest first: its overrides are its own rows, and
    the partitions before the trace's day (less CLOCK_SLACK) are never read."""
    _, rows = open_if_exists("assessments", warehouse, storage_options)
    mine = rows.filter(*assessments_since(trace_day), pl.col("trace_id") == pl.lit(trace_id, dtype=pl.String))
    return with_validity(mine).sort("created_at", "assessment_id").collect()


def assessment_value(row: Mapping[str, Any]) -> Any:
    """The typed value of an assessments row (a dict): bool, number (an int when integral, as it
    was logged), str, the decoded JSON value, or None when scoring failed."""
    column = VALUE_COLUMNS.get(row.get("value_type") or "")
    value = None if column is None else row.get(column)
    if value is None:
        return None
    if column == "value_json":
        return json.loads(value)
    if column == "value_number" and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return value


def value_as_number() -> pl.Expr:
    """The value as a Float64 for rates and means: numbers as they are, bools and the verdict
    words of BOOL_WORDS (any case) as 1.0 / 0.0, anything else (other strings, JSON, errors) null."""
    kind = pl.col("value_type")
    words = {word: float(flag) for word, flag in BOOL_WORDS.items()}
    verdict = pl.col("value_string").str.to_lowercase().replace_strict(words, default=None, return_dtype=pl.Float64)
    return (
        pl.when(kind == "number")
        .then(pl.col("value_number"))
        .when(kind == "bool")
        .then(pl.col("value_bool").cast(pl.Float64))
        .when(kind == "string")
        .then(verdict)
        .otherwise(None)
    )
