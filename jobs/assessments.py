"""The `assessments` table's writer, and the human API beside it.

`write_assessments` appends scorer results (the runner's rows) in one Delta commit;
`log_feedback`, `log_expectation` and `override_feedback` write one human row each. An override
is a new row whose `overrides` names the row it replaces: the old row stays, and readers count
the override instead of it. `typed_value` is the one place a Python value becomes the table's
typed value columns (spanlake.query.assessments reads them back).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping
from typing import Any

import polars as pl
from deltalake import CommitProperties, write_deltalake

from spanlake.errors import ScoringError
from spanlake.jobs.feedback import AssessmentError, AssessmentSource, Expectation, Feedback
from spanlake.query.assessments import scan_assessments
from spanlake.query.search import warehouse_location
from spanlake.tables.delta import NO_CHECKPOINT, check_warehouse, open_or_create, table_uri, writer_properties
from spanlake.tables.schemas import ASSESSMENTS

__all__ = [
    "RESULT_COLUMNS", "RESULT_SCHEMA", "feedback_row", "log_expectation", "log_feedback", "override_feedback",
    "result_row", "typed_value", "write_assessments",
]  # fmt: skip

# What the runner returns: the table's columns minus those a write adds, plus the scorer's name.
_ADDED_ON_WRITE = ("assessment_id", "run_id", "created_at", "day")
RESULT_COLUMNS = (*(c for c in ASSESSMENTS.column_names if c not in _ADDED_ON_WRITE), "scorer")
_TABLE_SCHEMA = pl.from_arrow(ASSESSMENTS.schema.empty_table()).schema  # type: ignore[union-attr]
RESULT_SCHEMA = pl.Schema({c: _TABLE_SCHEMA.get(c, pl.String) for c in RESULT_COLUMNS})

_VALUE_COLUMNS = ("value_type", "value_bool", "value_number", "value_string", "value_json")
_NO_VALUE: dict[str, Any] = dict.fromkeys(_VALUE_COLUMNS)


def typed_value(value: Any) -> dict[str, Any]:
    """The value columns for `value`: bool, number (int or float), string, or JSON (list, dict,
    tuple); None gives no value. numpy scalars count as their Python value. Anything else is a
    TypeError naming its type (the runner records it as the scorer's error)."""
    if value is None:
        return _NO_VALUE
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:  # a scalar, not an array
        value = value.item()
    if isinstance(value, bool):
        return {**_NO_VALUE, "value_type": "bool", "value_bool": value}
    if isinstance(value, (int, float)):
        return {**_NO_VALUE, "value_type": "number", "value_number": float(value)}
    if isinstance(value, str):
        return {**_NO_VALUE, "value_type": "string", "value_string": value}
    if isinstance(value, (list, tuple, dict)):
        try:
            text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"a {type(value).__name__} value must be JSON-serialisable: {exc}") from None
        return {**_NO_VALUE, "value_type": "json", "value_json": text}
    raise TypeError(f"a value must be a bool, number, string, list or dict, not {type(value).__name__}")


def result_row(
    *, trace_id: str, name: str, value: Any, source: AssessmentSource, kind: str = "feedback",
    scorer: str | None = None, scorer_version: str | None = None, span_id: str | None = None,
    rationale: str | None = None, metadata: Mapping[str, Any] | None = None,
    error: Exception | AssessmentError | str | None = None, overrides: str | None = None,
    judge_input_tokens: int | None = None, judge_output_tokens: int | None = None, judge_model: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One result row (RESULT_COLUMNS). Raises TypeError for a value no column can hold."""
    failure = None if error is None else AssessmentError.of(error)
    return {
        "trace_id": trace_id, "span_id": span_id, "name": name, "kind": kind,
        **(typed_value(value) if failure is None else _NO_VALUE),
        "rationale": None if rationale is None else str(rationale),
        "metadata": None if metadata is None else {str(k): str(v) for k, v in metadata.items()},
        "source_type": source.source_type, "source_id": source.source_id, "scorer_version": scorer_version,
        "error_code": failure and failure.error_code, "error_message": failure and failure.error_message,
        "judge_input_tokens": judge_input_tokens, "judge_output_tokens": judge_output_tokens,
        "judge_model": judge_model, "overrides": overrides, "scorer": scorer,
    }  # fmt: skip


def write_assessments(
    results: pl.DataFrame,
    *,
    run_id: str | None,
    warehouse: str,
    storage_options: Mapping[str, str] | None = None,
    commit_properties: CommitProperties | None = None,
) -> int:
    """Append `results` (rows with RESULT_COLUMNS; `scorer` is not stored) to `assessments` in
    one Delta commit, each with a new assessment_id, `run_id`, created_at = now and its day.
    `commit_properties` rides in the same commit (a job's watermark txn); with it, even zero
    rows make a commit. Returns the rows written."""
    missing = [c for c in RESULT_COLUMNS if c not in results.columns and c != "scorer"]
    if missing:
        raise ScoringError(f"write_assessments: results lack the columns {', '.join(missing)}")
    if results.is_empty() and commit_properties is None:
        return 0
    return len(_append(results, run_id, warehouse, storage_options, commit_properties))


def _append(
    results: pl.DataFrame, run_id: str | None, warehouse: str, storage_options: Mapping[str, str] | None,
    commit_properties: CommitProperties | None = None,
) -> list[str]:  # fmt: skip
    """Stamp and append rows in one commit; returns their new assessment ids."""
    check_warehouse(warehouse)
    now = dt.datetime.now(dt.timezone.utc)
    hex_ids = os.urandom(16 * results.height).hex()
    ids = [hex_ids[i : i + 32] for i in range(0, len(hex_ids), 32)]
    rows = results.with_columns(
        assessment_id=pl.Series(ids, dtype=pl.String),
        run_id=pl.lit(run_id, dtype=pl.String),
        created_at=pl.lit(now, dtype=_TABLE_SCHEMA["created_at"]),
        day=pl.lit(now.date()),
    ).select(pl.col(c).cast(t) for c, t in _TABLE_SCHEMA.items())
    table = open_or_create(table_uri(warehouse, ASSESSMENTS.name), ASSESSMENTS, storage_options)
    write_deltalake(
        table, rows.to_arrow().cast(ASSESSMENTS.schema), mode="append", partition_by=list(ASSESSMENTS.partition_by),
        writer_properties=writer_properties(ASSESSMENTS), commit_properties=commit_properties,
        post_commithook_properties=NO_CHECKPOINT,
    )  # fmt: skip
    return ids


# --- the human API ------------------------------------------------------------------------


def _human(source: AssessmentSource | None) -> AssessmentSource:
    return source if source is not None else AssessmentSource("HUMAN")


def _needs(trace_id: str, name: str) -> None:
    if not isinstance(trace_id, str) or not trace_id:
        raise ScoringError(f"trace_id must be a non-empty string, got {trace_id!r}")
    if not isinstance(name, str) or not name:
        raise ScoringError(f"name must be a non-empty string, got {name!r}")


def _write_one(row: dict[str, Any], warehouse: str | None, storage_options: Mapping[str, str] | None) -> str:
    where, options = warehouse_location(warehouse, storage_options)
    return _append(pl.DataFrame([row], schema=RESULT_SCHEMA), None, where, options)[0]


def _typed_row(**fields: Any) -> dict[str, Any]:
    try:
        return result_row(**fields)
    except TypeError as exc:
        raise ScoringError(f"assessment {fields['name']!r} on trace {fields['trace_id']}: {exc}") from None


def log_feedback(
    *, trace_id: str, name: str = "feedback", value: Any = None, rationale: str | None = None,
    source: AssessmentSource | None = None, error: Exception | AssessmentError | str | None = None,
    metadata: Mapping[str, Any] | None = None, span_id: str | None = None,
    warehouse: str | None = None, storage_options: Mapping[str, str] | None = None,
) -> str:  # fmt: skip
    """Record a verdict about a trace (or one of its spans), by a person unless `source` says
    otherwise; returns the new assessment_id. A feedback has a value or an error."""
    _needs(trace_id, name)
    if value is None and error is None:
        raise ScoringError(f"feedback {name!r} on trace {trace_id} needs a value or an error")
    row = _typed_row(
        trace_id=trace_id, name=name, value=value, rationale=rationale, source=_human(source), error=error,
        metadata=metadata, span_id=span_id,
    )  # fmt: skip
    return _write_one(row, warehouse, storage_options)


def log_expectation(
    *, trace_id: str, name: str, value: Any, source: AssessmentSource | None = None,
    metadata: Mapping[str, Any] | None = None, span_id: str | None = None,
    warehouse: str | None = None, storage_options: Mapping[str, str] | None = None,
) -> str:  # fmt: skip
    """Record ground truth for a trace (what scorers get as `expectations[name]`); returns the
    new assessment_id. A later expectation of the same name replaces it for scorers."""
    _needs(trace_id, name)
    try:
        expectation = Expectation(name, value, source=_human(source), metadata=dict(metadata or {}) or None)
    except ValueError as exc:
        raise ScoringError(f"trace {trace_id}: {exc}") from None
    row = _typed_row(
        trace_id=trace_id, name=name, value=expectation.value, source=expectation.source, kind="expectation",
        metadata=expectation.metadata, span_id=span_id,
    )  # fmt: skip
    return _write_one(row, warehouse, storage_options)


def override_feedback(
    *, trace_id: str, assessment_id: str, value: Any, rationale: str | None = None,
    source: AssessmentSource | None = None, metadata: Mapping[str, Any] | None = None,
    warehouse: str | None = None, storage_options: Mapping[str, str] | None = None,
) -> str:  # fmt: skip
    """Replace a feedback's verdict (a judge's, say) with a person's: a new row with the same
    name and span whose `overrides` is `assessment_id`; the old row stays for the record.
    Returns the new assessment_id."""
    where, options = warehouse_location(warehouse, storage_options)
    found = (
        scan_assessments(warehouse=where, storage_options=options, valid_only=False)
        .filter(pl.col("assessment_id") == assessment_id, pl.col("trace_id") == trace_id)
        .collect()
    )
    if found.is_empty():
        raise ScoringError(f"no assessment {assessment_id!r} on trace {trace_id} in {where} to override")
    old = found.row(0, named=True)
    if old["kind"] != "feedback":
        raise ScoringError(f"assessment {assessment_id!r} is an expectation; override_feedback replaces feedback")
    if value is None:
        raise ScoringError(f"overriding {old['name']!r} on trace {trace_id} needs a value")
    row = _typed_row(
        trace_id=trace_id, name=old["name"], value=value, rationale=rationale, source=_human(source),
        metadata=metadata, span_id=old["span_id"], overrides=assessment_id,
    )  # fmt: skip
    return _write_one(row, where, options)


def feedback_row(feedback: Feedback, *, trace_id: str, name: str, source: AssessmentSource, **extra: Any) -> dict[str, Any]:
    """The result row of a Feedback (its own name, source and span win over the defaults)."""
    return result_row(
        trace_id=trace_id, name=feedback.name or name, value=feedback.value, source=feedback.source or source,
        span_id=feedback.span_id, rationale=feedback.rationale, metadata=feedback.metadata, error=feedback.error,
        overrides=feedback.overrides, judge_input_tokens=feedback.judge_input_tokens,
        judge_output_tokens=feedback.judge_output_tokens, judge_model=feedback.judge_model, **extra,
    )  # fmt: skip
