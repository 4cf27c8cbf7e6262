"""Decoded spans -> Arrow rows for `span_data` and per-trace partial rows for `trace_info`.

A batch's trace rows are partial aggregates: trace_rollup merges them into what the table
already holds, so a trace whose spans arrive in several batches converges to one row.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from spanlake.ingest.conventions import MODEL_CALL_TYPES, Common, MLflow, normalise, trace_tags
from spanlake.ingest.otlp import Span
from spanlake.tables.schemas import SPAN_DATA, STRING_MAP, TRACE_INFO

PREVIEW_CHARS = 1000


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits, which OTLP JSON can carry
        return json.dumps(value, default=str)


@dataclass
class SpanRows:
    """Column lists for span_data plus the per-span facts trace_info needs."""

    cols: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in SPAN_DATA.column_names})
    is_error: list[bool] = field(default_factory=list)
    user_id: list[str | None] = field(default_factory=list)
    session_id: list[str | None] = field(default_factory=list)
    environment: list[str | None] = field(default_factory=list)
    # trace_id -> (tags, metadata) of its root span, or of its first span until the root arrives
    trace_maps: dict[str, tuple[dict[str, str], dict[str, str], bool]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.is_error)

    def add(self, span: Span, topic: str, partition: int, offset: int) -> None:
        attrs = span.attributes
        canon = normalise(attrs, span.status_code, tuple(e["name"] for e in span.events), span_name=span.name)
        c = self.cols
        c["trace_id"].append(span.trace_id)
        c["span_id"].append(span.span_id)
        c["parent_span_id"].append(span.parent_span_id)
        c["name"].append(span.name)
        c["span_kind"].append(span.kind)
        c["span_type"].append(canon.span_type)
        c["start_time"].append(span.start_ns // 1000)
        c["end_time"].append(span.end_ns // 1000)
        c["duration_ms"].append((span.end_ns - span.start_ns) / 1e6)
        c["status_code"].append("ERROR" if canon.is_error else span.status_code)
        c["status_message"].append(span.status_message)
        c["service_name"].append(_str_or_none(span.resource.get(Common.SERVICE_NAME)))
        for name in (
            "model", "provider", "input_tokens", "output_tokens", "total_tokens", "cache_read_input_tokens",
            "cache_creation_input_tokens", "reasoning_output_tokens", "provided_cost_usd", "inputs", "outputs",
        ):  # fmt: skip
            c[name].append(getattr(canon, name))
        c["attributes"].append(_json(attrs))
        c["resource_attributes"].append(_json(span.resource))
        c["events"].append(_json(span.events) if span.events else None)
        c["topic"].append(topic)
        c["partition"].append(partition)
        c["offset"].append(offset)
        self.is_error.append(canon.is_error)
        self.user_id.append(canon.user_id)
        self.session_id.append(canon.session_id)
        env = canon.environment or next((span.resource[k] for k in Common.ENVIRONMENT if k in span.resource), None)
        self.environment.append(_str_or_none(env))
        is_root = span.parent_span_id is None
        if is_root or span.trace_id not in self.trace_maps:
            metadata = {k: v for k, v in span.resource.items() if isinstance(v, str)}
            if canon.user_id:
                metadata[MLflow.TRACE_USER] = canon.user_id
            if canon.session_id:
                metadata[MLflow.TRACE_SESSION] = canon.session_id
            tags = trace_tags(attrs) if is_root else {}
            previous = self.trace_maps.get(span.trace_id)
            if previous is None or not previous[2]:
                self.trace_maps[span.trace_id] = (tags, metadata, is_root)

    def span_table(self, ingested_at: dt.datetime) -> pa.Table:
        n = len(self)
        arrays = {}
        for col in SPAN_DATA.columns:
            if col.name == "ingested_at":
                arrays[col.name] = pa.array([ingested_at] * n, col.type)
            elif col.name == "day":
                arrays[col.name] = pc.cast(arrays["start_time"], pa.date32())
            else:
                arrays[col.name] = pa.array(self.cols[col.name], col.type)
        return pa.table(arrays, schema=SPAN_DATA.schema)

    def trace_table(self, spans: pa.Table, ingested_at: dt.datetime) -> pa.Table:
        """One partial trace_info row per trace in this batch."""
        df = pl.from_arrow(
            spans.select(
                ["trace_id", "span_id", "parent_span_id", "name", "span_type", "start_time", "end_time",
                 "service_name", "model", "input_tokens", "output_tokens", "total_tokens", "inputs", "outputs"]
            )
        ).with_columns(
            is_error=pl.Series(self.is_error, dtype=pl.Boolean),
            user_id=pl.Series(self.user_id, dtype=pl.String),
            session_id=pl.Series(self.session_id, dtype=pl.String),
            environment=pl.Series(self.environment, dtype=pl.String),
        )  # fmt: skip
        df = df.unique(subset=["trace_id", "span_id"], keep="last", maintain_order=True)
        is_root = pl.col("parent_span_id").is_null()
        is_call = pl.col("span_type").is_in(list(MODEL_CALL_TYPES))

        def root_first(name: str) -> pl.Expr:
            col = pl.col(name)
            return col.filter(is_root).drop_nulls().first().fill_null(col.drop_nulls().first())

        def call_sum(name: str) -> pl.Expr:
            col = pl.col(name).filter(is_call)
            return pl.when(col.is_not_null().any()).then(col.sum()).otherwise(None)

        has_root = is_root.any()
        root_error = pl.col("is_error").filter(is_root).first()
        traces = df.group_by("trace_id", maintain_order=True).agg(
            request_time=pl.col("start_time").min(),
            end_time=pl.col("end_time").max(),
            state=pl.when(has_root).then(pl.when(root_error).then(pl.lit("ERROR")).otherwise(pl.lit("OK")))
            .otherwise(pl.lit("IN_PROGRESS")),
            root_span_id=pl.col("span_id").filter(is_root).first(),
            root_span_name=pl.col("name").filter(is_root).first(),
            service_name=root_first("service_name"),
            environment=root_first("environment"),
            user_id=root_first("user_id"),
            session_id=root_first("session_id"),
            span_count=pl.len().cast(pl.Int64),
            error_count=pl.col("is_error").sum().cast(pl.Int64),
            llm_call_count=is_call.sum().cast(pl.Int64),
            input_tokens=call_sum("input_tokens"),
            output_tokens=call_sum("output_tokens"),
            total_tokens=call_sum("total_tokens"),
            models=pl.col("model").drop_nulls().unique(maintain_order=True),
            request_preview=pl.col("inputs").filter(is_root).first().str.slice(0, PREVIEW_CHARS),
            response_preview=pl.col("outputs").filter(is_root).first().str.slice(0, PREVIEW_CHARS),
        )  # fmt: skip
        traces = traces.with_columns(
            duration_ms=(pl.col("end_time") - pl.col("request_time")).dt.total_microseconds() / 1000.0,
            ingested_at=pl.lit(ingested_at, dtype=pl.Datetime("us", "UTC")),
            day=pl.col("request_time").dt.date(),
        )
        ids = traces["trace_id"].to_list()
        maps = [self.trace_maps[t] for t in ids]
        table = traces.to_arrow()
        columns = {}
        for col in TRACE_INFO.columns:
            if col.name == "tags":
                columns[col.name] = pa.array([list(m[0].items()) for m in maps], STRING_MAP)
            elif col.name == "metadata":
                columns[col.name] = pa.array([list(m[1].items()) for m in maps], STRING_MAP)
            else:
                columns[col.name] = table.column(col.name).cast(col.type)
        return pa.table(columns, schema=TRACE_INFO.schema)


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else (None if value is None else str(value))
