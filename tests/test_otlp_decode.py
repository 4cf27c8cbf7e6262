"""The decoder under fuzzing: any input either decodes or raises DecodeError (a dead letter),
never anything else, and what decodes says exactly what was sent."""

from __future__ import annotations

import json
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spanlake.errors import DecodeError
from spanlake.ingest.exporter import to_otlp_json
from spanlake.ingest.otlp import MAX_TIME_NS, MIN_TIME_NS, decode

ids16 = st.binary(min_size=16, max_size=16).filter(any)
ids8 = st.binary(min_size=8, max_size=8).filter(any)
times = st.integers(MIN_TIME_NS, MAX_TIME_NS - 2 * 10**12)
scalars = st.one_of(
    st.text(max_size=30), st.integers(-(2**63), 2**63 - 1), st.booleans(), st.floats(allow_nan=False)
)
attributes = st.dictionaries(st.text(min_size=1, max_size=20), scalars, max_size=8)


@st.composite
def requests(draw) -> tuple[ExportTraceServiceRequest, list[dict]]:
    req = ExportTraceServiceRequest()
    scope = req.resource_spans.add().scope_spans.add()
    expected = []
    for _ in range(draw(st.integers(1, 5))):
        s = scope.spans.add()
        s.trace_id, s.span_id = draw(ids16), draw(ids8)
        s.parent_span_id = draw(st.one_of(st.just(b""), ids8))
        s.name = draw(st.text(max_size=40))
        s.start_time_unix_nano = start = draw(times)
        s.end_time_unix_nano = start + draw(st.integers(0, 10**12))
        s.kind = draw(st.integers(0, 5))
        s.status.code = draw(st.integers(0, 2))
        attrs = draw(attributes)
        for key, value in attrs.items():
            kv = s.attributes.add()
            kv.key = key
            field = {bool: "bool_value", int: "int_value", float: "double_value", str: "string_value"}[type(value)]
            setattr(kv.value, field, value)
        expected.append({"trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(), "name": s.name,
                         "start_ns": start, "attributes": attrs})  # fmt: skip
    return req, expected


def _seen(spans) -> list[dict]:
    return [{"trace_id": s.trace_id, "span_id": s.span_id, "name": s.name, "start_ns": s.start_ns,
             "attributes": s.attributes} for s in spans]  # fmt: skip


@given(requests())
@settings(max_examples=150, deadline=None)
def test_valid_requests_decode_exactly_in_both_encodings(case) -> None:
    req, expected = case
    for value, encoding in ((req.SerializeToString(), "otlp_proto"), (to_otlp_json(req), "otlp_json")):
        spans, rejects = decode(value, encoding)
        assert rejects == []
        assert _seen(spans) == expected, encoding


@given(st.binary(max_size=400))
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_decode_or_raise_decode_error(value: bytes) -> None:
    for encoding in ("otlp_proto", "otlp_json"):
        try:
            decode(value, encoding)
        except DecodeError:
            pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["resourceSpans", "scopeSpans", "spans", "traceId", "spanId", "attributes", "key", "value",
                         "stringValue", "intValue", "arrayValue", "kvlistValue", "values", "status", "code",
                         "events", "startTimeUnixNano", "kind", "resource"]), children, max_size=5),
    max_leaves=30,
)  # fmt: skip


@given(json_values)
@settings(max_examples=400, deadline=None)
def test_arbitrary_json_decodes_or_raises_decode_error(doc) -> None:
    try:
        # stdlib json: it writes integers beyond 64 bits too, which a hostile producer could send
        decode(json.dumps({"resourceSpans": [doc]} if not isinstance(doc, dict) else doc).encode(), "otlp_json")
    except DecodeError:
        pass


@given(requests(), st.data())
@settings(max_examples=150, deadline=None)
def test_mutated_protobuf_decodes_or_raises_decode_error(case, data) -> None:
    value = bytearray(case[0].SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        value[data.draw(st.integers(0, len(value) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(value)))
    try:
        decode(bytes(value[:cut]), "otlp_proto")
    except DecodeError:
        pass
