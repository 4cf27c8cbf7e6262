"""Merge a batch's partial trace rows into `trace_info`, so one trace is always one row.

The MERGE combines the stored row (t) with the batch's partial (s) in a single Delta commit:
times widen, counts add, fields the root span decides come from whichever side holds the
root. Readers therefore never see two rows for a trace, however its spans were split.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable

from spanlake.tables.delta import NO_CHECKPOINT, writer_properties
from spanlake.tables.schemas import TRACE_INFO


def _add(col: str) -> str:
    # null + n = n: a side that reported no tokens must not erase the other's count
    return f"CASE WHEN t.{col} IS NULL THEN s.{col} WHEN s.{col} IS NULL THEN t.{col} ELSE t.{col} + s.{col} END"


def _root_side(col: str) -> str:
    # The side holding the root span decides; otherwise keep what is known.
    return f"CASE WHEN s.root_span_id IS NOT NULL THEN coalesce(s.{col}, t.{col}) ELSE coalesce(t.{col}, s.{col}) END"


def _us(expr: str) -> str:
    return f"CAST({expr} AS BIGINT)"


REQUEST_TIME = "least(t.request_time, s.request_time)"
END_TIME = "greatest(t.end_time, s.end_time)"

UPDATES: dict[str, str] = {
    "request_time": REQUEST_TIME,
    "end_time": END_TIME,
    "duration_ms": f"CAST({_us(END_TIME)} - {_us(REQUEST_TIME)} AS DOUBLE) / 1000.0",
    "state": "CASE WHEN s.root_span_id IS NOT NULL THEN s.state ELSE t.state END",
    "span_count": "t.span_count + s.span_count",
    "error_count": "t.error_count + s.error_count",
    "llm_call_count": "t.llm_call_count + s.llm_call_count",
    **{col: _add(col) for col in ("input_tokens", "output_tokens", "total_tokens")},
    "models": "array_distinct(array_concat(coalesce(t.models, make_array()), coalesce(s.models, make_array())))",
    **{
        col: _root_side(col)
        for col in (
            "root_span_id", "root_span_name", "service_name", "environment", "user_id", "session_id",
            "request_preview", "response_preview",
        )
    },  # fmt: skip
    "tags": "CASE WHEN s.root_span_id IS NOT NULL THEN s.tags ELSE t.tags END",
    "metadata": "CASE WHEN s.root_span_id IS NOT NULL OR t.root_span_id IS NULL THEN s.metadata ELSE t.metadata END",
    "ingested_at": "s.ingested_at",
    "day": f"CAST({REQUEST_TIME} AS DATE)",
}


def candidate_days(partials: pa.Table) -> list[dt.date]:
    """Days a stored row of these traces can be in: a late root may start the day before."""
    days = set(pc.unique(partials.column("day")).to_pylist())
    return sorted(days | {d - dt.timedelta(days=1) for d in days} | {d + dt.timedelta(days=1) for d in days})


def merge_traces(table: DeltaTable, partials: pa.Table, commit: CommitProperties) -> None:
    """Upsert `partials` into trace_info in one commit that also records `commit`'s offsets."""
    days = ", ".join(f"'{d.isoformat()}'::date" for d in candidate_days(partials))
    (
        table.merge(
            partials,
            # The literal day list lets delta-rs skip every other partition.
            predicate=f"t.trace_id = s.trace_id AND t.day IN ({days})",
            source_alias="s",
            target_alias="t",
            writer_properties=writer_properties(TRACE_INFO),
            commit_properties=commit,
            post_commithook_properties=NO_CHECKPOINT,
        )
        .when_matched_update(UPDATES)
        .when_not_matched_insert_all()
        .execute()
    )
