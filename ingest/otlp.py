"""OTLP trace requests (protobuf or JSON) -> validated spans with plain Python values.

A message that cannot be decoded raises DecodeError; a single bad span inside a good message
is returned as a SpanReject so that its neighbours still land.

Protobuf has two decoders that return the same objects and raise the same errors: the compiled
`spanlake_native` extension (native/, built by `make setup` when cargo is on PATH) and the
pure-Python one below, which is the fallback and the reference. NATIVE tells which is in use.
"""

from __future__ import annotations

import base64
import math
import sys
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spanlake.errors import DecodeError
from spanlake.ingest.encodings import UTF8_BOM, Encoding
from spanlake.tables.vocabulary import STATUS_CODES

try:
    import spanlake_native
except ImportError:  # not built (no cargo): the pure-Python decoder does the work
    spanlake_native = None

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
#
# Every field read is type-checked. null means "absent", as in protobuf's JSON mapping. A
# wrong-typed field of a span rejects that span (SpanReject) and its neighbours land; a wrong
# shape above the spans (the request, a resourceSpans or scopeSpans entry, a resource) is a
# DecodeError for the whole message, since it is not any one span's.

_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)
_MAX_DOUBLE = sys.float_info.max
_MAX_DIGITS = 30  # int() of a very long digit string is slow (and refused past 4,300 digits)
_DOUBLE_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_JSON_TYPES = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}


class _WrongType(Exception):
    """A field holds a value of the wrong type. The field's path is built only on the way out
    (`within`), so the good case pays for no path strings."""

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem

    def within(self, prefix: str) -> _WrongType:
        self.field = f"{prefix}.{self.field}" if self.field else prefix
        return self

    def __str__(self) -> str:
        return f"{self.field} {self.problem}"


def _found(value: Any) -> str:
    """How a wrong value is quoted in an error: its JSON type and at most 40 characters of it."""
    if value is None:
        return "null"
    try:
        text = orjson.dumps(value).decode()
    except (orjson.JSONEncodeError, TypeError):  # nested too deep, or an integer beyond 64 bits
        text = f"of {len(value)} items" if isinstance(value, (list, dict)) else repr(value)
    return f"{_JSON_TYPES.get(type(value), type(value).__name__)} {text[:40]}{'...' if len(text) > 40 else ''}"


def _wrong(field: str, expected: str, value: Any) -> _WrongType:
    return _WrongType(field, f"must be {expected}, got {_found(value)}")


def _json_list(value: Any, field: str) -> list[Any]:
    if type(value) is list:
        return value
    if value is None:
        return []
    raise _wrong(field, "an array", value)


def _json_object(value: Any, field: str) -> dict[str, Any]:
    if type(value) is dict:
        return value
    if value is None:
        return {}
    raise _wrong(field, "an object", value)


def _json_str(value: Any, field: str) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    raise _wrong(field, "a string", value)


def _json_int(value: Any, field: str) -> int:
    """An integer field: a JSON number without a fraction, or a decimal string (64-bit ones are strings)."""
    if type(value) is str and _is_decimal(value):
        if len(value) > _MAX_DIGITS:
            raise _WrongType(field, f"has {len(value)} digits, too many for a 64-bit integer")
        return int(value)
    if type(value) is int:
        return value
    if value is None:
        return 0
    if type(value) is float and value.is_integer():
        return int(value)
    raise _wrong(field, "an integer or a decimal string", value)


def _json_uint64(value: Any, field: str) -> int:
    number = _json_int(value, field)
    if not _UINT64[0] <= number <= _UINT64[1]:
        raise _WrongType(field, f"{number} is outside uint64")
    return number


def _is_decimal(text: str) -> bool:
    digits = text[1:] if text[:1] == "-" else text
    return digits.isascii() and digits.isdigit()


def _json_enum(value: Any, names: tuple[str, ...], prefix: str, field: str) -> int:
    """An enum: its number, or its name with or without the prefix (an unknown name is -1)."""
    if type(value) is str and not _is_decimal(value):
        name = value.removeprefix(prefix)
        return names.index(name) if name in names else -1
    return _json_int(value, field)


def _json_id(value: Any, field: str) -> bytes:
    try:
        return bytes.fromhex(_json_str(value, field))
    except ValueError:
        raise _wrong(field, "a hex string", value) from None


def _json_any_value(v: Any) -> Any:
    """An AnyValue object -> a Python value of the type the protobuf decoders return."""
    if type(v) is not dict:  # (type checks inline where they run per attribute)
        v = _json_object(v, "")
    for key, item in v.items():
        if key == "stringValue" and type(item) is str:
            return item
        if item is None:
            continue
        if key == "stringValue":
            return _json_str(item, "string_value")
        if key == "intValue":
            number = _json_int(item, "int_value")
            if not _INT64[0] <= number <= _INT64[1]:
                raise _WrongType("int_value", f"{number} is outside int64")
            return number
        if key == "boolValue":
            if type(item) is bool:
                return item
            raise _wrong("bool_value", "true or false", item)
        if key == "doubleValue":
            if type(item) in (int, float) and -_MAX_DOUBLE <= item <= _MAX_DOUBLE:
                return float(item)
            if type(item) is str and item in _DOUBLE_WORDS:
                return _DOUBLE_WORDS[item]
            raise _wrong("double_value", "a number", item)
        if key == "arrayValue":
            values = _json_list(_json_object(item, "array_value").get("values"), "array_value.values")
            out = []
            for i, x in enumerate(values):
                try:
                    out.append(_json_any_value(x))
                except _WrongType as exc:
                    raise exc.within(f"array_value.values[{i}]") from None
            return out
        if key == "kvlistValue":
            return _json_attrs(_json_object(item, "kvlist_value").get("values"), "kvlist_value.values")
        if key == "bytesValue":
            return _json_str(item, "bytes_value")  # base64, as the protobuf decoders return bytes
    return None


def _json_attrs(kvs: Any, field: str) -> dict[str, Any]:
    attrs = {}
    kvs = _json_list(kvs, field)
    for kv in kvs:
        try:
            if type(kv) is not dict:
                kv = _json_object(kv, "")
            key = kv.get("key")
            if type(key) is not str:
                key = _json_str(key, "key")
            try:
                attrs[key] = _json_any_value(kv.get("value"))
            except _WrongType as exc:
                raise exc.within("value") from None
        except _WrongType as exc:
            i = next(i for i, x in enumerate(kvs) if x is kv)  # the index, found only for the error
            raise exc.within(f"{field}[{i}]") from None
    return attrs


def _decode_json(value: bytes) -> tuple[list[Span], list[SpanReject]]:
    try:
        doc = orjson.loads(value[3:] if value[:3] == UTF8_BOM else value)  # orjson refuses a BOM
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not an OTLP JSON ExportTraceServiceRequest ({len(value)} bytes): {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans"), list):
        found = _found(doc.get("resourceSpans") if isinstance(doc, dict) else doc)
        raise DecodeError(
            f"not an OTLP JSON ExportTraceServiceRequest ({len(value)} bytes): expected an object with a "
            f"resourceSpans array, got {found}"
        )
    spans: list[Span] = []
    rejects: list[SpanReject] = []
    where = "resourceSpans"
    try:
        for r, rs in enumerate(doc["resourceSpans"]):
            where = f"resourceSpans[{r}]"
            rs = _json_object(rs, where)
            resource = _json_object(rs.get("resource"), "resource")
            resource = _json_attrs(resource.get("attributes"), "resource.attributes")
            for i, ss in enumerate(_json_list(rs.get("scopeSpans"), "scopeSpans")):
                where = f"resourceSpans[{r}].scopeSpans[{i}]"
                ss = _json_object(ss, "")
                for j, s in enumerate(_json_list(ss.get("spans"), "spans")):
                    _json_span(spans, rejects, s, resource, j, where)
    except _WrongType as exc:
        raise DecodeError(f"malformed OTLP JSON ExportTraceServiceRequest: {exc.within(where)}") from None
    except RecursionError:  # attribute values nested hundreds deep
        raise DecodeError("malformed OTLP JSON ExportTraceServiceRequest: values nested too deeply") from None
    return spans, rejects


def _json_span(
    spans: list[Span], rejects: list[SpanReject], s: Any, resource: dict[str, Any], index: int, where: str
) -> None:
    """Adds span number `index` of the scopeSpans at `where`, or a SpanReject naming its wrong field."""
    if type(s) is not dict:
        rejects.append(SpanReject(None, None, f"span {where}.spans[{index}] {_wrong('', 'an object', s).problem}"))
        return
    name: str | None = None
    trace_id = span_id = b""
    try:
        name = _json_str(s.get("name"), "name")
        trace_id = _json_id(s.get("traceId"), "trace_id")
        span_id = _json_id(s.get("spanId"), "span_id")
        status = _json_object(s.get("status"), "status")
        events = []
        for i, e in enumerate(_json_list(s.get("events"), "events")):
            try:
                e = _json_object(e, "")
                events.append({
                    "name": _json_str(e.get("name"), "name"),
                    "time_unix_nano": _json_uint64(e.get("timeUnixNano"), "time_unix_nano"),
                    "attributes": _json_attrs(e.get("attributes"), "attributes"),
                })  # fmt: skip
            except _WrongType as exc:
                raise exc.within(f"events[{i}]") from None
        _check_and_add(
            spans, rejects, trace_id, span_id, _json_id(s.get("parentSpanId"), "parent_span_id"), name,
            _json_enum(s.get("kind"), SPAN_KINDS, "SPAN_KIND_", "kind"),
            _json_int(s.get("startTimeUnixNano"), "start_time_unix_nano"),
            _json_int(s.get("endTimeUnixNano"), "end_time_unix_nano"),
            _json_enum(status.get("code"), STATUS_CODES, "STATUS_CODE_", "status.code"),
            _json_str(status.get("message"), "status.message"),
            _json_attrs(s.get("attributes"), "attributes"), events, resource,
        )  # fmt: skip
    except _WrongType as exc:
        tid = trace_id.hex() if len(trace_id) == 16 else None
        sid = span_id.hex() if len(span_id) == 8 else None
        named = f"{where}.spans[{index}]" if name is None else repr(name)
        rejects.append(SpanReject(tid, sid, f"span {named}: {exc}"))


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
