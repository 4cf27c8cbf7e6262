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

from spanlake.ingest.attribute_keys import Common, MLflow
from spanlake.ingest.conventions import normalise, trace_tags
from spanlake.ingest.otlp import Span
from spanlake.tables.schemas import SPAN_DATA, STRING_MAP, TRACE_INFO
from spanlake.tables.tokens import counts_tokens, is_model_call, token_sums

PREVIEW_CHARS = 1000


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits, which OTLP JSON can carry
        return json.dumps(value, default=str)


# Per-span facts trace_info needs that span_data does not store as columns.
EXTRA_SCHEMA = pa.schema(
    [("is_error", pa.bool_()), ("user_id", pa.string()), ("session_id", pa.string()), ("environment", pa.string())]
)
_CANONICAL = (
    "model", "provider", "input_tokens", "output_tokens", "total_tokens", "cache_read_input_tokens",
    "cache_creation_input_tokens", "reasoning_output_tokens", "provided_cost_usd", "inputs", "outputs",
)  # fmt: skip


@dataclass
class SpanRows:
    """Column lists for span_data plus the per-span facts trace_info needs."""

    cols: dict[str, list[Any]] = field(
        default_factory=lambda: {c: [] for c in SPAN_DATA.column_names + EXTRA_SCHEMA.names}
    )
    # trace_id -> (tags, metadata, from_root) of its root span, or of its first span until then
    trace_maps: dict[str, tuple[dict[str, str], dict[str, str], bool]] = field(default_factory=dict)
    # id(resource dict) -> (JSON, service.name, environment, string attributes); the spans of one
    # ResourceSpans share one dict, so this is computed once per resource, not once per span
    _resources: dict[int, tuple[str, str | None, str | None, dict[str, str]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.cols["span_id"])

    def _resource(self, resource: dict[str, Any]) -> tuple[str, str | None, str | None, dict[str, str]]:
        cached = self._resources.get(id(resource))
        if cached is None:
            env = next((resource[k] for k in Common.ENVIRONMENT if k in resource), None)
            strings = {k: v for k, v in resource.items() if isinstance(v, str)}
            cached = (_json(resource), _str_or_none(resource.get(Common.SERVICE_NAME)), _str_or_none(env), strings)
            self._resources[id(resource)] = cached
        return cached

    def add(self, span: Span, topic: str, partition: int, offset: int) -> None:
        attrs = span.attributes
        canon = normalise(attrs, span.status_code, tuple(e["name"] for e in span.events), span_name=span.name)
        resource_json, service, resource_env, resource_strings = self._resource(span.resource)
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
        c["service_name"].append(service)
        for name in _CANONICAL:
            c[name].append(getattr(canon, name))
        c["attributes"].append(_json(attrs))
        c["resource_attributes"].append(resource_json)
        c["events"].append(_json(span.events) if span.events else None)
        c["topic"].append(topic)
        c["partition"].append(partition)
        c["offset"].append(offset)
        c["is_error"].append(canon.is_error)
        c["user_id"].append(canon.user_id)
        c["session_id"].append(canon.session_id)
        c["environment"].append(canon.environment or resource_env)
        is_root = span.parent_span_id is None
        previous = self.trace_maps.get(span.trace_id)
        if previous is None or (is_root and not previous[2]):
            metadata = dict(resource_strings)
            if canon.user_id:
                metadata[MLflow.TRACE_USER] = canon.user_id
            if canon.session_id:
                metadata[MLflow.TRACE_SESSION] = canon.session_id
            self.trace_maps[span.trace_id] = (trace_tags(attrs) if is_root else {}, metadata, is_root)

    def table(self, ingested_at: dt.datetime) -> pa.Table:
        """span_data's columns followed by EXTRA_SCHEMA's (see `span_data_only`)."""
        n = len(self)
        arrays = {}
        for col in SPAN_DATA.columns:
            if col.name == "ingested_at":
                arrays[col.name] = pa.repeat(pa.scalar(ingested_at, col.type), n)
            elif col.name == "day":
                arrays[col.name] = pc.cast(arrays["start_time"], pa.date32())
            else:
                arrays[col.name] = _array(self.cols[col.name], col.type, col.name)
        for f in EXTRA_SCHEMA:
            arrays[f.name] = _array(self.cols[f.name], f.type, f.name)
        return pa.table(arrays)

    def trace_table(self, spans: pa.Table, ingested_at: dt.datetime) -> pa.Table:
        """One partial trace_info row per trace in `spans` (a `table()`, possibly filtered)."""
        traces = trace_aggregates(pl.DataFrame(spans.select(list(ROLLUP_COLUMNS)))).with_columns(
            ingested_at=pl.lit(ingested_at, dtype=pl.Datetime("us", "UTC"))
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


# What the per-trace rollup reads of a span row: span_data columns and EXTRA_SCHEMA's.
ROLLUP_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "name", "span_type", "start_time", "end_time", "service_name", "model",
    "input_tokens", "output_tokens", "total_tokens", "inputs", "outputs", *EXTRA_SCHEMA.names,
)  # fmt: skip


def trace_aggregates(spans: pl.DataFrame) -> pl.DataFrame:
    """One trace_info row per trace of `spans` (ROLLUP_COLUMNS at least), in order of first
    appearance, with every column trace_info derives from spans: all but tags, metadata and
    ingested_at. Ingest's rows are partials (trace_rollup merges them with what the table holds);
    over all of a trace's spans, the row is the trace's.

    The rules: times span the spans; a trace is IN_PROGRESS until its root (the span without a
    parent) is there, then ERROR or OK as the root; root-decided fields come from the root, else
    from the first span that has them; tokens by the rule of spanlake.tables.tokens."""
    is_root = pl.col("parent_span_id").is_null()
    # Judged within these spans; ingest's trace_rollup corrects for a trace's spans in other batches.
    df = spans.with_columns(counts_tokens=counts_tokens(spans))

    def root_first(name: str) -> pl.Expr:
        col = pl.col(name)
        return col.filter(is_root).drop_nulls().first().fill_null(col.drop_nulls().first())

    has_root = is_root.any()
    root_error = pl.col("is_error").filter(is_root).first()
    traces = df.group_by("trace_id", maintain_order=True).agg(
        *token_sums(pl.col("counts_tokens")),
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
        llm_call_count=is_model_call().sum().cast(pl.Int64),
        models=pl.col("model").drop_nulls().unique(maintain_order=True),
        request_preview=pl.col("inputs").filter(is_root).first().str.slice(0, PREVIEW_CHARS),
        response_preview=pl.col("outputs").filter(is_root).first().str.slice(0, PREVIEW_CHARS),
    )  # fmt: skip
    return traces.with_columns(
        duration_ms=(pl.col("end_time") - pl.col("request_time")).dt.total_microseconds() / 1000.0,
        day=pl.col("request_time").dt.date(),
    )


def _array(values: list[Any], type_: pa.DataType, name: str) -> pa.Array:
    try:
        return pa.array(values, type_)
    except Exception as exc:  # the dead letter says which column Arrow refused
        exc.add_note(f"(column {name})")
        raise


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else (None if value is None else str(value))


def span_data_only(table: pa.Table) -> pa.Table:
    return table.select(SPAN_DATA.column_names).cast(SPAN_DATA.schema)
