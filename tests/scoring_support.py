"""Hand-made traces for the scoring tests, written through the real ingest path (OTLP protobuf
decoded and committed by DeltaSink), so the tables hold exactly what ingest would store."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from spanlake.ingest.sink import DeltaSink

START_NS = 1_764_000_000 * 10**9  # 2025-11-24
_ids = itertools.count(1)


@dataclass
class S:
    """One span: its type, inputs/outputs (dicts become JSON), status and duration."""

    name: str = "step"
    type: str = "CHAIN"
    inputs: Any = None
    outputs: Any = None
    error: bool = False
    ms: float = 5.0
    offset_ms: float = 0.0
    attrs: dict[str, Any] = field(default_factory=dict)
    children: list[S] = field(default_factory=list)


def _value(text: Any) -> tuple[str, str]:
    if isinstance(text, str):
        return text, "text/plain"
    return json.dumps(text), "application/json"


def _spans(trace_id: bytes, s: S, parent: bytes, start: int, session: str | None) -> list[Span]:
    span_id = next(_ids).to_bytes(8, "big")
    begin = start + int(s.offset_ms * 1e6)
    span = Span(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=s.name,
        start_time_unix_nano=begin, end_time_unix_nano=begin + int(s.ms * 1e6),
        status=Status(code=Status.STATUS_CODE_ERROR if s.error else Status.STATUS_CODE_OK),
    )  # fmt: skip
    attrs: dict[str, Any] = {"openinference.span.kind": s.type, **s.attrs}
    if session and not parent:
        attrs["session.id"] = session
    if s.inputs is not None:
        attrs["input.value"], attrs["input.mime_type"] = _value(s.inputs)
    if s.outputs is not None:
        attrs["output.value"], attrs["output.mime_type"] = _value(s.outputs)
    for key, value in attrs.items():
        kv = span.attributes.add()
        kv.key = key
        if isinstance(value, bool):
            kv.value.bool_value = value
        elif isinstance(value, int):
            kv.value.int_value = value
        else:
            kv.value.string_value = str(value)
    out = [span]
    for child in s.children:
        out += _spans(trace_id, child, span_id, begin, None)
    return out


def trace_id_of(n: int) -> str:
    return f"{n:032x}"


class Lake:
    """A warehouse under a test's tmp_path, written through DeltaSink one message per trace."""

    def __init__(self, warehouse: str) -> None:
        self.warehouse = warehouse
        self.sink = DeltaSink(warehouse, group="g", topic="t")
        self.sink.load_offsets([0])
        self.offset = 0
        self.n = 0

    def add(
        self, *roots: S, session: str | None = None, start_ns: int | None = None, service: str = "svc"
    ) -> list[str]:
        """One trace per root span (of `service`); returns their trace ids."""
        ids, records = [], []
        for root in roots:
            self.n += 1
            trace_id = self.n.to_bytes(16, "big")
            begin = START_NS + self.n * 1_000_000_000 if start_ns is None else start_ns
            req = ExportTraceServiceRequest()
            rs = req.resource_spans.add()
            kv = rs.resource.attributes.add()
            kv.key, kv.value.string_value = "service.name", service
            rs.scope_spans.add().spans.extend(_spans(trace_id, root, b"", begin, session))
            records.append(ConsumerRecord("t", 0, -1, self.offset, 0, 0, None, req.SerializeToString(), [], None, 0, 0, 0))
            self.offset += 1
            ids.append(trace_id.hex())
        self.sink.commit(self.sink.decode(records))
        return ids

    def add_raw(self, *values: bytes) -> None:
        """Messages as they are, in one batch (bytes that are no OTLP request become dead letters)."""
        records = []
        for value in values:
            records.append(ConsumerRecord("t", 0, -1, self.offset, 0, 0, None, value, [], None, 0, 0, 0))
            self.offset += 1
        self.sink.commit(self.sink.decode(records))
