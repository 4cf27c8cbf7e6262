"""The compiled protobuf decoder (native/, module spanlake_native) against the pure-Python one.

The pure-Python `_decode_proto` in ingest/otlp.py is the reference: for any bytes, both must
raise the same DecodeError or return equal Span/SpanReject lists (types, dict order, float bits
and the resource dict shared per ResourceSpans included).
"""

from __future__ import annotations

import dataclasses
import shutil
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanlake.errors import DecodeError
from spanlake.ingest import otlp
from spanlake.ingest.workload import Workload

needs_native = pytest.mark.skipif(
    not otlp.NATIVE, reason="spanlake_native is not built (test_native_decoder_is_built_and_in_use says why)"
)
NOW = 1_764_000_000 * 10**9  # 2025-11-24 in ns
TRACE, SPAN, PARENT = bytes(range(1, 17)), bytes(range(1, 9)), bytes(range(9, 17))


# --- a protobuf wire writer, for input the protobuf API cannot produce ----------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def vi(number: int, n: int) -> bytes:  # varint field
    return key(number, 0) + varint(n)


def f64(number: int, n: int) -> bytes:  # fixed64 field
    return key(number, 1) + struct.pack("<Q", n)


def dbl(number: int, x: float) -> bytes:
    return key(number, 1) + struct.pack("<d", x)


def f32(number: int, n: int) -> bytes:
    return key(number, 5) + struct.pack("<I", n)


def ld(number: int, payload: bytes | str) -> bytes:  # length-delimited field
    payload = payload.encode() if isinstance(payload, str) else payload
    return key(number, 2) + varint(len(payload)) + payload


def group(number: int, inner: bytes = b"") -> bytes:
    return key(number, 3) + inner + key(number, 4)


def kv(k: str | bytes, value: bytes | None = None) -> bytes:  # a KeyValue; value: AnyValue bytes
    return ld(1, k) + (b"" if value is None else ld(2, value))


def s_(text: str | bytes) -> bytes:  # AnyValue fields
    return ld(1, text)


def arr(*values: bytes) -> bytes:
    return ld(5, b"".join(ld(1, v) for v in values))


def kvl(*kvs: bytes) -> bytes:
    return ld(6, b"".join(ld(1, x) for x in kvs))


def span(*extra: bytes, trace=TRACE, span_id=SPAN, start=NOW, end=NOW + 5_000, name="op") -> bytes:
    fields = [ld(1, trace) if trace is not None else b"", ld(2, span_id) if span_id is not None else b""]
    fields += [ld(5, name), f64(7, start), f64(8, end), *extra]
    return b"".join(fields)


def attr(k: str | bytes, value: bytes | None = None) -> bytes:  # a Resource's attributes field
    return ld(1, kv(k, value))


def request(*spans: bytes, resource: bytes = attr("service.name", s_("svc")), scope: bytes = b"") -> bytes:
    ss = (ld(1, scope) if scope else b"") + b"".join(ld(2, s) for s in spans)
    return ld(1, ld(1, resource) + ld(2, ss))


# --- comparing the two decoders -------------------------------------------------------------


def canon(x):
    """A comparable form that tells bool from int, keeps dict order and compares float bits."""
    if isinstance(x, (otlp.Span, otlp.SpanReject)):
        return (type(x).__name__, *(canon(getattr(x, f.name)) for f in dataclasses.fields(x)))
    if isinstance(x, dict):
        return ("dict", tuple((canon(k), canon(v)) for k, v in x.items()))
    if isinstance(x, list):
        return ("list", tuple(canon(v) for v in x))
    if isinstance(x, float):
        return ("float", struct.pack("<d", x))
    assert type(x) in (bool, int, str, type(None)), type(x)
    return (type(x).__name__, x)


def sharing(spans: list[otlp.Span]) -> list[int]:
    """Which spans share one resource dict object, as first-seen indexes."""
    seen: dict[int, int] = {}
    return [seen.setdefault(id(s.resource), len(seen)) for s in spans]


def outcome(value: bytes, native: bool):
    try:
        return "ok", (otlp._decode_proto_native if native else otlp._decode_proto)(value)
    except DecodeError as exc:
        return "error", str(exc)


def agree(value: bytes) -> tuple[list[otlp.Span], list[otlp.SpanReject]] | str:
    """Decodes `value` both ways, asserts the results are the same, returns them (or the error)."""
    pure, native = outcome(value, native=False), outcome(value, native=True)
    if pure[0] == "error" or native[0] == "error":
        assert native == pure
        prefix = f"not an OTLP protobuf ExportTraceServiceRequest ({len(value)} bytes): Error parsing message"
        assert pure[1].startswith(prefix)
        return pure[1]
    (p_spans, p_rejects), (n_spans, n_rejects) = pure[1], native[1]
    assert [type(s) for s in n_spans] == [otlp.Span] * len(p_spans)
    assert [type(r) for r in n_rejects] == [otlp.SpanReject] * len(p_rejects)
    assert canon(n_spans) == canon(p_spans)
    assert canon(n_rejects) == canon(p_rejects)
    assert n_rejects == p_rejects
    assert sharing(n_spans) == sharing(p_spans)
    return native[1]


# --- (c) the build ----------------------------------------------------------------------------


def test_native_decoder_is_built_and_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    if not otlp.NATIVE:
        if shutil.which("cargo"):
            pytest.fail(
                "cargo is on PATH but spanlake_native does not import: the native/ build is broken "
                "(`.venv/bin/pip install ./native` shows why)"
            )
        pytest.skip("no cargo on PATH: `make setup` installed only the pure-Python decoder")
    import spanlake_native

    calls = []
    real = spanlake_native.decode_proto
    monkeypatch.setattr(spanlake_native, "decode_proto", lambda *a: calls.append(1) or real(*a))
    spans, rejects = otlp.decode(request(span()), "otlp_proto")
    assert calls == [1] and len(spans) == 1 and not rejects
    otlp.decode(request(span()), "otlp_proto", native=False)
    assert calls == [1]


@needs_native
def test_native_schema_matches_the_installed_proto() -> None:
    """Every field the decoder knows, and nothing else: a proto upgrade shows up here."""
    import spanlake_native
    from google.protobuf.descriptor import FieldDescriptor as F

    varints = {F.TYPE_INT32, F.TYPE_INT64, F.TYPE_UINT32, F.TYPE_UINT64, F.TYPE_BOOL, F.TYPE_ENUM}
    expected: dict[str, dict[int, str]] = {}

    def walk(d) -> None:
        if d.full_name in expected:
            return
        expected[d.full_name] = table = {}
        for f in d.fields:
            if f.type == F.TYPE_MESSAGE:
                table[f.number] = f.message_type.full_name
                walk(f.message_type)
            elif f.type in (F.TYPE_STRING, F.TYPE_BYTES):
                table[f.number] = "string" if f.type == F.TYPE_STRING else "bytes"
            else:  # a repeated number could be packed, which the decoder does not read
                assert not f.is_repeated, f.full_name
                kind = {F.TYPE_FIXED64: "fixed64", F.TYPE_DOUBLE: "fixed64", F.TYPE_FIXED32: "fixed32"}
                table[f.number] = "varint" if f.type in varints else kind[f.type]

    walk(ExportTraceServiceRequest.DESCRIPTOR)
    assert spanlake_native.schema() == expected


# --- (a) equivalence on a corpus --------------------------------------------------------------


def workload_messages(traces: int = 40) -> list[bytes]:
    memory = InMemorySpanExporter()
    workload = Workload(memory, seed=7)
    for i in range(traces):
        workload.emit_trace(i, 50)
    workload.shutdown()
    spans = list(memory.get_finished_spans())
    messages = [encode_spans(spans[i : i + 25]).SerializeToString() for i in range(0, len(spans), 25)]
    return [*messages, encode_spans(spans).SerializeToString()]


WORKLOAD = workload_messages()


@needs_native
def test_workload_messages_decode_the_same() -> None:
    total = 0
    for message in WORKLOAD:
        spans, rejects = agree(message)
        assert not rejects
        total += len(spans)
    assert total > 300  # several resources and scopes per message, events, arrays, errors
    spans = agree(WORKLOAD[-1])[0]
    assert len(set(sharing(spans))) > 1 and any(s.events for s in spans)
    assert any(isinstance(v, list) for s in spans for v in s.attributes.values())


ANY_VALUES = {
    "string": s_("hé ☃ \x00 \"'"),
    "empty string": s_(""),
    "true": vi(2, 1),
    "false": vi(2, 0),
    "bool 256": vi(2, 256),
    "int 0": vi(3, 0),
    "int -1": vi(3, -1),
    "int max": vi(3, 2**63 - 1),
    "int min": vi(3, -(2**63)),
    "double": dbl(4, 1.5),
    "double -0": dbl(4, -0.0),
    "double nan": dbl(4, float("nan")),
    "double inf": dbl(4, float("-inf")),
    "bytes": ld(7, b"\x00\xff\x10"),
    "bytes 1": ld(7, b"\xfb"),
    "bytes 2": ld(7, b"\xfb\xff"),
    "bytes empty": ld(7, b""),
    "no value": b"",
    "strindex": vi(8, 3),
    "array": arr(s_("a"), vi(3, 1), b"", arr(vi(2, 1), arr(dbl(4, 2.5))), kvl(kv("x", vi(3, 2)))),
    "empty array": arr(),
    "kvlist": kvl(kv("a", kvl(kv("b", arr(vi(3, 1))))), kv("c"), kv("a", s_("dup"))),
    "empty kvlist": kvl(),
    # a oneof set several times: the last member wins; the same message member twice merges
    "string then int": s_("x") + vi(3, 7),
    "array twice merges": arr(vi(3, 1)) + arr(vi(3, 2)),
    "array string array": arr(vi(3, 1)) + s_("x") + arr(vi(3, 2)),
    "kvlist twice merges": kvl(kv("a", vi(3, 1))) + kvl(kv("b", vi(3, 2)), kv("a", vi(3, 3))),
    "kvlist then array": kvl(kv("a", vi(3, 1))) + arr(vi(3, 2)),
    "int then strindex": vi(3, 7) + vi(8, 1),
    # wire-type mismatches are unknown fields to upb, not errors
    "mismatched": key(1, 0) + varint(5) + ld(3, b"xy") + f32(4, 1) + vi(5, 1) + vi(7, 2),
    "unknown fields": vi(99, 1) + ld(100, b"\xff\xfe") + group(101, vi(1, 2) + group(2)) + f32(102, 0),
}


@needs_native
@pytest.mark.parametrize("name", ANY_VALUES)
def test_every_any_value_kind(name: str) -> None:
    value = ANY_VALUES[name]
    spans, _ = agree(request(span(ld(9, kv("k", value)), ld(9, ld(1, "nested") + ld(2, arr(value))))))
    assert len(spans) == 1
    # also as a resource attribute, an event attribute and a kvlist member
    resource = attr("r", value) + attr("r2", kvl(kv("in", value)))
    spans, _ = agree(request(span(ld(11, ld(3, kv("e", value)))), resource=resource))
    assert len(spans) == 1


EDGE_SPANS = {
    "minimal": span(),
    "parent": span(ld(4, PARENT)),
    "zero parent": span(ld(4, bytes(8))),
    "empty parent": span(ld(4, b"")),
    "short parent": span(ld(4, b"\x01" * 7)),
    "no trace id": span(trace=None),
    "short trace id": span(trace=TRACE[:15]),
    "long trace id": span(trace=TRACE + b"\x01"),
    "zero trace id": span(trace=bytes(16)),
    "no span id": span(span_id=None),
    "zero span id": span(span_id=bytes(8)),
    "short span id and trace": span(trace=TRACE[:3], span_id=SPAN[:3]),
    "zero times": span(start=0, end=0),
    "before 2000": span(start=otlp.MIN_TIME_NS - 1),
    "at 2000": span(start=otlp.MIN_TIME_NS, end=otlp.MIN_TIME_NS),
    "at 2100": span(end=otlp.MAX_TIME_NS),
    "just before 2100": span(end=otlp.MAX_TIME_NS - 1),
    "far future": span(start=2**64 - 1, end=2**64 - 1),
    "end before start": span(start=NOW, end=NOW - 1),
    "no times": ld(1, TRACE) + ld(2, SPAN),
    "reject name repr": span(trace=None, name="it's \"quoted\" ☃\n\t\\"),
    "no name": ld(1, TRACE) + ld(2, SPAN) + f64(7, NOW) + f64(8, NOW),
    **{f"kind {k}": span(vi(6, k)) for k in (0, 1, 2, 3, 4, 5, 6, 99, -1, 2**32 + 2)},
    **{f"status {c}": span(ld(15, vi(3, c) + ld(2, "why"))) for c in (0, 1, 2, 3, -1)},
    "status empty message": span(ld(15, vi(3, 2) + ld(2, ""))),
    "status empty": span(ld(15, b"")),
    "status merged": span(ld(15, vi(3, 2)), ld(15, ld(2, "later")), vi(6, 3)),
    "status last wins": span(ld(15, vi(3, 2) + ld(2, "a")), ld(15, vi(3, 1))),
    "events": span(
        ld(11, f64(1, NOW) + ld(2, "exception") + ld(3, kv("exception.type", s_("E")))),
        ld(11, b""),
        ld(11, ld(2, "second") + vi(4, 3) + ld(3, kv("a", vi(3, 1)) + kv("a", vi(3, 2)))),
    ),
    "duplicate attributes": span(ld(9, kv("a", vi(3, 1))), ld(9, kv("b", vi(3, 2))), ld(9, kv("a", s_("last")))),
    "key strindex": span(ld(9, vi(3, 4) + ld(2, vi(3, 1)))),
    "key value merged": span(ld(9, ld(2, arr(vi(3, 1))) + ld(1, "k") + ld(2, arr(vi(3, 2))))),
    "links and extras": span(
        ld(3, "rojo=00f067aa0ba902b7"),
        f32(16, 0x301),
        vi(10, 2),
        vi(12, 3),
        vi(14, 4),
        ld(13, ld(1, TRACE) + ld(2, SPAN) + ld(3, "ts") + ld(4, kv("l", s_("v"))) + vi(5, 1) + f32(6, 1)),
    ),
    "repeated scalars: last wins": span(ld(1, b"\x00" * 16), ld(5, "renamed"), f64(7, NOW - 10), vi(6, 2), vi(6, 3)),
    "mismatched wire types": span(vi(5, 3), vi(7, 1), f32(8, 0), ld(6, b"\x02"), vi(9, 1), vi(15, 2), ld(1, b"")),
    "unknown fields and groups": span(vi(50, 1), ld(51, b"\xff"), group(52, ld(1, b"\xff") + group(3, f64(4, 1)))),
}


@needs_native
@pytest.mark.parametrize("name", EDGE_SPANS)
def test_edge_case_spans(name: str) -> None:
    spans, rejects = agree(request(EDGE_SPANS[name]))
    assert len(spans) + len(rejects) == 1


@needs_native
def test_edge_case_requests() -> None:
    two_scopes = ld(2, ld(1, ld(1, "scope") + ld(2, "1.0") + ld(3, kv("a", vi(3, 1))) + vi(4, 1)) + ld(2, span()))
    entity_ref = ld(3, ld(1, "u") + ld(2, "t") + ld(3, "k1") + ld(3, "k2") + ld(4, "d"))
    cases = {
        "empty": b"",
        "empty resource spans": ld(1, b""),
        "no resource": ld(1, ld(2, ld(2, span()))),
        "all edge spans in one": request(*EDGE_SPANS.values()),
        "two scopes, schema urls": ld(1, ld(1, attr("a", s_("b"))) + two_scopes + two_scopes + ld(3, "https://x")),
        "resource after scope spans, merged": ld(
            1, ld(2, ld(2, span())) + ld(1, attr("a", vi(3, 1)) + vi(2, 4)) + ld(1, attr("b", s_("c")) + attr("a", s_("d")))
        ),
        "several resources": request(span()) + request(span(), span(trace=None)) + request(resource=attr("x", s_("y"))),
        "entity refs": request(span(), resource=attr("a", s_("b")) + entity_ref + entity_ref),
        "unknown top-level fields": vi(2, 1) + request(span()) + ld(7, b"\xff\xff") + group(9) + f64(3, 1),
        "mismatched resource spans": key(1, 0) + varint(1) + key(1, 5) + bytes(4) + request(span()),
        "5-byte lengths and tags": ld(1, b"") + key(1, 2) + b"\x80\x80\x80\x80\x00" + b"\xf8\xff\xff\xff\x0f" + varint(1),
        "10-byte varint": vi(2, 2**64 - 1) + key(2, 0) + b"\xff" * 9 + b"\x7f",
        "invalid utf-8 in bytes": request(span(ld(4, b"\xff" * 8))),
        # upb skips an unknown group without looking inside: field 0 and bad UTF-8 are fine there
        "inside unknown groups": request(span(group(9, vi(0, 1) + ld(0, b"\xff") + group(0, f32(0, 1)) + ld(5, b"\xff")))),
        "5-byte tags in a group": group(9, b"\x88\x80\x80\x80\x00\x01") + b"\xcb\x80\x80\x80\x00" + b"\xcc\x80\x80\x80\x00",
        "message field as a group": request(span(group(9, ld(1, b"\xff")), group(15, vi(3, 2)))),
    }
    for name, value in cases.items():
        assert isinstance(agree(value), tuple), name


BAD_UTF8 = [b"\xff", b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80", b"\xe0\x80\x80", b"\xc2", b"ok\x80"]


@needs_native
@pytest.mark.parametrize("bad", BAD_UTF8)
def test_invalid_utf8_in_any_string_field_is_an_error(bad: bytes) -> None:
    link = ld(1, TRACE) + ld(2, SPAN)
    places = [
        request(span(name=bad)),
        request(span(ld(9, kv(bad, s_("v"))))),
        request(span(ld(9, kv("k", s_(bad))))),
        request(span(ld(9, kv("k", arr(kvl(kv("k", s_(bad)))))))),
        request(span(ld(3, bad))),
        request(span(ld(11, ld(2, bad)))),
        request(span(ld(15, ld(2, bad)))),
        request(span(ld(13, link + ld(3, bad)))),
        request(span(ld(13, link + ld(4, kv(bad))))),
        request(span(), scope=ld(1, bad)),
        request(span(), scope=ld(3, kv("k", s_(bad)))),
        request(span(), resource=attr("k", s_(bad))),
        request(span(), resource=attr("k") + ld(3, ld(3, bad))),
        ld(1, ld(3, bad)),
        ld(1, ld(2, ld(3, bad))),
        request(span(ld(9, kv("k", s_(bad) + vi(3, 1))))),  # overwritten later: still an error
        request(span(trace=None, name=bad)),  # a rejected span: still an error
    ]
    for value in places:
        assert agree(value).endswith(": String field had bad UTF-8"), value
    assert isinstance(agree(request(span(ld(99, bad)))), tuple)  # unknown fields are not checked


@needs_native
def test_malformed_wire_format_is_an_error() -> None:
    good = request(span())
    cases = [
        good[:-1],
        good + b"\x08",  # a tag without its value
        b"\x0a\x05ab",  # a length past the end
        ld(1, b"") + key(1, 2) + b"\x80\x80\x80\x80\x80\x00",  # a 6-byte length
        b"\x90\x80\x80\x80\x80\x00\x01",  # a 6-byte tag
        b"\x90\x80\x80\x80\x10\x01",  # a tag above 2**32
        key(2, 0) + b"\xff" * 10 + b"\x01",  # an 11-byte varint
        vi(0, 1),  # field number 0
        ld(0, b""),
        group(0),
        key(1, 6),  # wire types 6 and 7
        key(1, 7),
        key(5, 4),  # an end-group tag outside any group
        request(span(key(5, 4))),
        key(5, 3) + vi(1, 1) + key(6, 4),  # a group ended by another number
        key(5, 3) + vi(1, 1),  # an unterminated group
        key(5, 3),
        ld(1, ld(2, ld(2, span()[:-3]))),  # a field across its message's end, bytes after it
        ld(1, ld(2, key(2, 2) + b"\x05ab")) + b"\x00" * 8,
        request(span(ld(9, kv("k", key(4, 1) + b"\x00\x00")))),
        group(9, key(1, 6)),  # inside groups
        group(9, key(1, 0) + b"\xff" * 10 + b"\x01"),
        group(9, b"\x88\x80\x80\x80\x80\x00\x01"),
        group(9, key(1, 2) + b"\x81\x80\x80\x80\x80\x00a"),
        key(9, 3) + key(1, 2) + b"\x05a",
        key(9, 3) + key(8, 3) + key(9, 4) + key(8, 4),
        key(9, 3) + b"\xcc\x80\x80\x80\x80\x00",
        ld(1, ld(2, key(9, 3))) + key(9, 4),  # a group cannot end outside its message
    ]
    for value in cases:
        assert agree(value).endswith(": Wire format was corrupt"), value


def nested_arrays(levels: int) -> bytes:
    value = b""
    for _ in range(levels):
        value = ld(5, ld(1, value))
    return value


def nested_groups(levels: int) -> bytes:
    return key(9, 3) * levels + key(9, 4) * levels


@needs_native
def test_depth_limit_is_upbs() -> None:
    """100 nested messages and groups are fine, 101 are an error."""
    too_deep = "Exceeded upb_DecodeOptions_MaxDepth"
    for levels in range(45, 50):  # the any value is at depth 5 (resource spans 1, ..., key value 4)
        result = agree(request(span(ld(9, kv("k", nested_arrays(levels))))))
        assert isinstance(result, tuple) if 5 + 2 * levels <= 100 else result.endswith(too_deep)
    for levels in range(95, 100):  # groups in a span (depth 3): too deep is "corrupt" there
        result = agree(request(span(nested_groups(levels))))
        assert isinstance(result, tuple) if 3 + levels <= 100 else result.endswith("Wire format was corrupt")


@needs_native
def test_decode_accepts_what_parse_from_string_accepts() -> None:
    good = request(span(ld(9, kv("k", s_("v")))))
    for value in (bytearray(good), memoryview(good)):
        assert canon(list(otlp.decode(value, "otlp_proto", native=True))) == canon(
            list(otlp.decode(value, "otlp_proto", native=False))
        )
    with pytest.raises(DecodeError, match="empty message"):
        otlp.decode(b"", "otlp_proto", native=True)


# --- (b) hypothesis: random and mutated bytes -------------------------------------------------

CORPUS = [
    WORKLOAD[0],
    request(*EDGE_SPANS.values()),
    request(span(*(ld(9, kv(name, v)) for name, v in ANY_VALUES.items()))),
]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@needs_native
@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(value: bytes) -> None:
    agree(value)


@st.composite
def mutated(draw) -> bytes:
    value = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(value)))
        edit = draw(st.sampled_from(["truncate", "flip", "set", "insert", "delete"]))
        if edit == "truncate":
            del value[at:]
        elif edit == "insert":
            value[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif edit == "delete":
            del value[at : at + draw(st.integers(1, 8))]
        elif at < len(value):
            value[at] = value[at] ^ (1 << draw(st.integers(0, 7))) if edit == "flip" else draw(st.integers(0, 255))
    return bytes(value)


@needs_native
@FUZZ
@given(mutated())
def test_mutated_messages(value: bytes) -> None:
    agree(value)


def fields_strategy(max_leaves: int = 12, max_fields: int = 6):
    """Random field sequences: field numbers the schemas use (and 0, and unknown ones), every
    wire type, payloads that are text, bad UTF-8, ids, or nested random messages."""
    payload = st.one_of(
        st.text(max_size=6).map(str.encode),
        st.sampled_from([b"", TRACE, SPAN, bytes(8), b"\xff", b"\xc3", "☃".encode()]),
        st.binary(max_size=6),
    )
    number = st.one_of(st.integers(1, 16), st.sampled_from([0, 17, 100]))
    leaf = st.one_of(
        st.builds(vi, number, st.one_of(st.integers(0, 5), st.integers(-(2**63), 2**64 - 1))),
        st.builds(f64, number, st.sampled_from([0, NOW, NOW + 1, 2**64 - 1, 0x7FF8000000000001])),
        st.builds(f32, number, st.integers(0, 2**32 - 1)),
        st.builds(ld, number, payload),
    )

    def extend(children):
        return st.one_of(
            st.builds(ld, number, children),
            st.builds(group, st.integers(1, 20), children),
        )

    message = st.recursive(leaf, extend, max_leaves=max_leaves)
    return st.lists(message, max_size=max_fields).map(b"".join)


def structured():
    """Mostly-valid requests with random fields mixed in at every level, so that spans are
    accepted and their attributes (random AnyValues) are compared, not just the errors."""
    noise = fields_strategy(3, max_fields=2)
    any_value = fields_strategy(8, max_fields=4)
    attribute = st.builds(lambda k, v, n: ld(9, kv(k, v) + n), st.sampled_from(["a", "b", "é"]), any_value, noise)
    status = st.one_of(st.just(b""), st.builds(ld, st.just(15), noise))
    one_span = st.builds(lambda a, n, s: span(*a, n, s), st.lists(attribute, max_size=3), noise, status)
    resource = st.builds(lambda v, n: attr("r", v) + n, any_value, noise)
    return st.builds(lambda ss, r, n: request(*ss, resource=r) + n, st.lists(one_span, min_size=1, max_size=2), resource, noise)


@needs_native
@FUZZ
@given(structured())
def test_structured_random_requests(value: bytes) -> None:
    agree(value)


@needs_native
@FUZZ
@given(fields_strategy())
def test_random_field_sequences(value: bytes) -> None:
    agree(value)
