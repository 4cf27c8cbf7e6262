"""MLflow-shaped views of one trace's rows, so that a scorer written against MLflow 3's `Trace`
runs on spanlake's unchanged: `TraceInfo` (the trace_info row, also read as attributes under
MLflow's names), `Span` and `SpanStatus` (a span_data row as MLflow's Span), `TraceData`
(`trace.data.spans`, `.request`, `.response`) and `Assessment` (an assessments row).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson

from spanlake.query.assessments import assessment_value

__all__ = ["Assessment", "Record", "Span", "SpanStatus", "TraceData", "TraceInfo", "parse_payload"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def parse_payload(text: str | None) -> Any:
    """A stored input, output or attribute value: the decoded value when the text is JSON, else
    the text itself (span inputs and outputs hold either)."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _epoch_ns(when: dt.datetime | None) -> int | None:
    return None if when is None else (when - _EPOCH) // dt.timedelta(microseconds=1) * 1000


class Record(dict[str, Any]):
    """A dict whose keys also read as attributes: `info["state"]` and `info.state` alike."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}") from None


class TraceInfo(Record):
    """The trace_info row. Keys are its columns, in spanlake's types (`info["request_time"]` is a
    datetime); attributes also answer MLflow 3's TraceInfo names in MLflow's units, so
    `info.request_time` and `info.timestamp_ms` are epoch milliseconds and `info.execution_duration`
    milliseconds. Any other column reads as an attribute too (`info.session_id`)."""

    def __init__(self, row: Mapping[str, Any] | None = None, assessments: Sequence[Assessment] = ()) -> None:
        super().__init__(row or {})
        self.assessments = list(assessments)

    @property
    def request_id(self) -> str:
        return str(self["trace_id"])

    @property
    def request_time(self) -> int | None:
        ns = _epoch_ns(self.get("request_time"))
        return None if ns is None else ns // 1_000_000

    timestamp_ms = request_time

    @property
    def execution_duration(self) -> float | None:
        return self.get("duration_ms")

    execution_time_ms = execution_duration

    @property
    def status(self) -> str:
        return str(self["state"])

    @property
    def trace_metadata(self) -> dict[str, str]:
        return dict(self.get("metadata") or {})

    request_metadata = trace_metadata

    @property
    def client_request_id(self) -> str | None:
        return (self.get("tags") or {}).get("client_request_id")

    @property
    def token_usage(self) -> dict[str, int] | None:
        usage = {k: self.get(k) for k in ("input_tokens", "output_tokens", "total_tokens")}
        return None if all(v is None for v in usage.values()) else {k: v or 0 for k, v in usage.items()}


@dataclass(frozen=True)
class SpanStatus:
    """MLflow's SpanStatus: `status_code` is OK, ERROR or UNSET (SpanStatusCode's values)."""

    status_code: str
    description: str = ""


class Span:
    """A span_data row as MLflow's Span; `row` keeps every column (tokens, model, duration_ms).
    inputs, outputs and attribute values are decoded from JSON when they are JSON."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.row = row

    def __repr__(self) -> str:
        return f"Span(name={self.name!r}, span_type={self.span_type!r}, span_id={self.span_id!r})"

    @property
    def trace_id(self) -> str:
        return str(self.row["trace_id"])

    request_id = trace_id

    @property
    def span_id(self) -> str:
        return str(self.row["span_id"])

    @property
    def parent_id(self) -> str | None:
        return self.row["parent_span_id"]

    @property
    def name(self) -> str:
        return str(self.row["name"])

    @property
    def span_type(self) -> str | None:
        return self.row["span_type"]

    @property
    def start_time_ns(self) -> int | None:
        return _epoch_ns(self.row["start_time"])

    @property
    def end_time_ns(self) -> int | None:
        return _epoch_ns(self.row["end_time"])

    @property
    def status(self) -> SpanStatus:
        return SpanStatus(self.row["status_code"] or "UNSET", self.row.get("status_message") or "")

    @cached_property
    def inputs(self) -> Any:
        return parse_payload(self.row["inputs"])

    @cached_property
    def outputs(self) -> Any:
        return parse_payload(self.row["outputs"])

    @cached_property
    def attributes(self) -> dict[str, Any]:
        decoded = parse_payload(self.row.get("attributes"))
        return decoded if isinstance(decoded, dict) else {}

    @cached_property
    def events(self) -> list[Record]:
        """MLflow's SpanEvent fields: name, timestamp (epoch ns) and attributes."""
        decoded = parse_payload(self.row.get("events"))
        events = decoded if isinstance(decoded, list) else []
        return [
            Record(name=e.get("name"), timestamp=e.get("time_unix_nano"), attributes=e.get("attributes") or {})
            for e in events
            if isinstance(e, dict)
        ]

    def get_attribute(self, key: str) -> Any:
        return self.attributes.get(key)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.row)


class TraceData:
    """MLflow's TraceData: `spans` (tree order) and the root span's `request` / `response`, as
    MLflow gives them: the stored text (JSON text for MLflow-instrumented apps), not decoded."""

    def __init__(self, spans: list[Span], root_span_id: str | None = None) -> None:
        self.spans = spans
        self._root_id = root_span_id

    def _root(self) -> Span | None:
        roots = [s for s in self.spans if s.span_id == self._root_id] or [s for s in self.spans if s.parent_id is None]
        return roots[0] if roots else None

    @property
    def request(self) -> str | None:
        root = self._root()
        return None if root is None else root.row["inputs"]

    @property
    def response(self) -> str | None:
        root = self._root()
        return None if root is None else root.row["outputs"]


class Assessment(Record):
    """An assessments row (every column) plus `valid` (false when another row overrides it) and
    `value` (the typed value); `source` and `error` group their columns as MLflow does."""

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Assessment:
        return cls({**row, "valid": row.get("valid", True), "value": assessment_value(row)})

    @property
    def source(self) -> Record:
        return Record(source_type=self["source_type"], source_id=self.get("source_id"))

    @property
    def error(self) -> Record | None:
        code = self.get("error_code")
        return None if code is None else Record(error_code=code, error_message=self.get("error_message"))

    @property
    def create_time_ms(self) -> int | None:
        ns = _epoch_ns(self.get("created_at"))
        return None if ns is None else ns // 1_000_000
