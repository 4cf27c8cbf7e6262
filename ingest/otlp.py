"""OTLP trace requests (protobuf or JSON) -> validated spans with plain Python values.

A message that cannot be decoded raises DecodeError; a single bad span inside a good message
is returned as a SpanReject so that its neighbours still land.

Protobuf has two decoders that return the same objects and raise the same errors: the compiled
`spanlake_native` extension (native/, built by `make setup` when cargo is on PATH) and the
pure-Python one below, which is the fallback and the reference. NATIVE tells which is in use.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spanlake.errors import DecodeError
from spanlake.tables.vocabulary import STATUS_CODES

try:
    import spanlake_native
except ImportError:  # not built (no cargo): the pure-Python decoder does the work
    spanlake_native = None

Encoding = Literal["otlp_proto", "otlp_json"]

CONTENT_TYPES: dict[str, Encoding] = {
    "application/x-protobuf": "otlp_proto",
    "application/protobuf": "otlp_proto",
    "application/json": "otlp_json",
}
SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
# Timestamps outside this window are clock bugs, not traces: 2000-01-01 .. 2100-01-01 in ns.
MIN_TIME_NS = 946_684_800 * 10**9
MAX_TIME_NS = 4_102_444_800 * 10**9
# True when protobuf requests are decoded by the compiled spanlake_native extension.
NATIVE = spanlake_native is not None


@dataclass(slots=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status_code: str
    status_message: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    resource: dict[str, Any]


@dataclass(slots=True)
class SpanReject:
    trace_id: str | None
    span_id: str | None
    error: str


def encoding_of(headers: list[tuple[str, bytes]] | None, default: Encoding) -> Encoding:
    """The message's encoding from its content-type header, else the configured default."""
    for key, value in headers or ():
        if key.lower() == "content-type":
            media = value.decode("latin-1").split(";")[0].strip().lower()
            if media in CONTENT_TYPES:
                return CONTENT_TYPES[media]
            raise DecodeError(f"unsupported content-type {media!r} (expected one of {', '.join(CONTENT_TYPES)})")
    return default


def decode(
    value: bytes | None, encoding: Encoding, *, native: bool | None = None
) -> tuple[list[Span], list[SpanReject]]:
    """`native` picks the protobuf decoder: None the default (NATIVE), False the pure-Python one."""
    if not value:
        raise DecodeError("empty message: expected an OTLP ExportTraceServiceRequest")
    if encoding == "otlp_json":
        return _decode_json(value)
    if native is None:
        native = NATIVE
    return _decode_proto_native(value) if native else _decode_proto(value)


# --- protobuf ---------------------------------------------------------------------------


def _any_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "int_value":
        return v.int_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "double_value":
        return v.double_value
    if kind == "array_value":
        return [_any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in kvs}


def _decode_proto_native(value: bytes) -> tuple[list[Span], list[SpanReject]]:
    """The compiled twin of _decode_proto below (native/src/lib.rs): same objects, same errors."""
    if spanlake_native is None:
        raise RuntimeError("spanlake_native is not installed: `make setup` builds it when cargo is on PATH")
    try:
        return spanlake_native.decode_proto(value if type(value) is bytes else bytes(value), Span, SpanReject)
    except spanlake_native.DecodeError as exc:
        raise DecodeError(f"not an OTLP protobuf ExportTraceServiceRequest ({len(value)} bytes): {exc}") from exc


def _decode_proto(value: bytes) -> tuple[list[Span], list[SpanReject]]:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(value)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"not an OTLP protobuf ExportTraceServiceRequest ({len(value)} bytes): {exc}") from exc
    spans: list[Span] = []
    rejects: list[SpanReject] = []
    for rs in request.resource_spans:
        resource = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                events = [
                    {"name": e.name, "time_unix_nano": e.time_unix_nano, "attributes": _attrs(e.attributes)}
                    for e in s.events
                ]
                _check_and_add(
                    spans, rejects, s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind,
                    s.start_time_unix_nano, s.end_time_unix_nano, s.status.code, s.status.message,
                    _attrs(s.attributes), events, resource,
                )  # fmt: skip
    return spans, rejects


# --- JSON -------------------------------------------------------------------------------


def _json_any_value(v: dict[str, Any]) -> Any:
    for key, item in v.items():
        if key == "stringValue":
            return item
        if key == "intValue":
            return int(item)
        if key == "boolValue":
            return bool(item)
        if key == "doubleValue":
            return float(item)
        if key == "arrayValue":
            return [_json_any_value(x) for x in item.get("values", ())]
        if key == "kvlistValue":
            return {kv["key"]: _json_any_value(kv.get("value", {})) for kv in item.get("values", ())}
        if key == "bytesValue":
            return item
    return None


def _json_attrs(kvs: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {kv["key"]: _json_any_value(kv.get("value") or {}) for kv in kvs or ()}


def _json_id(text: str | None) -> bytes:
    try:
        return bytes.fromhex(text or "")
    except ValueError:
        return b"\xff"  # wrong length on purpose: reported as a bad id below


def _enum(value: Any, names: tuple[str, ...], prefix: str) -> int:
    if isinstance(value, str):
        name = value.removeprefix(prefix)
        return names.index(name) if name in names else -1
    return int(value or 0)


def _decode_json(value: bytes) -> tuple[list[Span], list[SpanReject]]:
    try:
        doc = orjson.loads(value)
        resource_spans = doc["resourceSpans"] if isinstance(doc, dict) else None
        if not isinstance(resource_spans, list):
            raise KeyError("resourceSpans")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise DecodeError(f"not an OTLP JSON ExportTraceServiceRequest ({len(value)} bytes): {exc}") from exc
    spans: list[Span] = []
    rejects: list[SpanReject] = []
    try:
        for rs in resource_spans:
            resource = _json_attrs((rs.get("resource") or {}).get("attributes"))
            for ss in rs.get("scopeSpans") or ():
                for s in ss.get("spans") or ():
                    status = s.get("status") or {}
                    events = [
                        {
                            "name": e.get("name", ""),
                            "time_unix_nano": int(e.get("timeUnixNano") or 0),
                            "attributes": _json_attrs(e.get("attributes")),
                        }
                        for e in s.get("events") or ()
                    ]
                    _check_and_add(
                        spans, rejects, _json_id(s.get("traceId")), _json_id(s.get("spanId")),
                        _json_id(s.get("parentSpanId")), s.get("name", ""),
                        _enum(s.get("kind"), SPAN_KINDS, "SPAN_KIND_"),
                        int(s.get("startTimeUnixNano") or 0), int(s.get("endTimeUnixNano") or 0),
                        _enum(status.get("code"), STATUS_CODES, "STATUS_CODE_"), status.get("message"),
                        _json_attrs(s.get("attributes")), events, resource,
                    )  # fmt: skip
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise DecodeError(f"malformed OTLP JSON: {type(exc).__name__}: {exc}") from exc
    return spans, rejects


# --- validation shared by both encodings ------------------------------------------------


def _span_problem(trace_id: bytes, span_id: bytes, parent: bytes, start: int, end: int) -> str | None:
    if len(trace_id) != 16 or not any(trace_id):
        return f"trace_id must be 16 non-zero bytes, got {len(trace_id)} bytes"
    if len(span_id) != 8 or not any(span_id):
        return f"span_id must be 8 non-zero bytes, got {len(span_id)} bytes"
    if parent and len(parent) != 8:
        return f"parent_span_id must be empty or 8 bytes, got {len(parent)} bytes"
    if not MIN_TIME_NS <= start < MAX_TIME_NS:
        return f"start_time_unix_nano {start} is outside 2000-01-01..2100-01-01"
    if not MIN_TIME_NS <= end < MAX_TIME_NS:
        return f"end_time_unix_nano {end} is outside 2000-01-01..2100-01-01"
    if end < start:
        return f"end_time_unix_nano {end} is before start_time_unix_nano {start}"
    return None


def _check_and_add(
    spans: list[Span],
    rejects: list[SpanReject],
    trace_id: bytes,
    span_id: bytes,
    parent: bytes,
    name: str,
    kind: int,
    start: int,
    end: int,
    status_code: int,
    status_message: str | None,
    attributes: dict[str, Any],
    events: list[dict[str, Any]],
    resource: dict[str, Any],
) -> None:
    problem = _span_problem(trace_id, span_id, parent, start, end)
    if problem is not None:
        tid = trace_id.hex() if len(trace_id) == 16 else None
        sid = span_id.hex() if len(span_id) == 8 else None
        rejects.append(SpanReject(tid, sid, f"span {name!r}: {problem}"))
        return
    spans.append(
        Span(
            trace_id=trace_id.hex(),
            span_id=span_id.hex(),
            parent_span_id=parent.hex() if parent and any(parent) else None,
            name=name,
            kind=SPAN_KINDS[kind] if 0 <= kind < len(SPAN_KINDS) else "UNSPECIFIED",
            start_ns=start,
            end_ns=end,
            status_code=STATUS_CODES[status_code] if 0 <= status_code < len(STATUS_CODES) else "UNSET",
            status_message=status_message or None,
            attributes=attributes,
            events=events,
            resource=resource,
        )
    )
