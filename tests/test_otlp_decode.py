"""The decoder under fuzzing: any input either decodes or raises DecodeError (a dead letter),
never anything else, and what decodes says exactly what was sent."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spanlake.errors import DecodeError
from spanlake.exporter import to_otlp_json
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


# --- wrong types in OTLP JSON: one span rejected, or the whole message when above the spans ----

GOOD_SPAN = {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708", "name": "s",
             "startTimeUnixNano": str(MIN_TIME_NS + 1), "endTimeUnixNano": str(MIN_TIME_NS + 2)}  # fmt: skip


def json_request(*spans, **resource_spans) -> bytes:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}], **resource_spans}]}).encode()


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("name", 123, "span resourceSpans[0].scopeSpans[0].spans[1]: name must be a string, got number 123"),
        ("name", ["a"], 'span resourceSpans[0].scopeSpans[0].spans[1]: name must be a string, got array ["a"]'),
        ("status", {"code": 2, "message": 123}, "span 's': status.message must be a string, got number 123"),
        ("status", [2], "span 's': status must be an object, got array [2]"),
        ("status", {"code": 1.5}, "span 's': status.code must be an integer or a decimal string, got number 1.5"),
        ("kind", True, "span 's': kind must be an integer or a decimal string, got boolean true"),
        ("traceId", 5, "span 's': trace_id must be a string, got number 5"),
        ("spanId", "xyz", 'span \'s\': span_id must be a hex string, got string "xyz"'),
        ("parentSpanId", {}, "span 's': parent_span_id must be a string, got object {}"),
        ("startTimeUnixNano", "1e18", 'span \'s\': start_time_unix_nano must be an integer or a decimal string, got string "1e18"'),
        ("endTimeUnixNano", "9" * 40, "span 's': end_time_unix_nano has 40 digits, too many for a 64-bit integer"),
        ("attributes", {"k": "v"}, 'span \'s\': attributes must be an array, got object {"k":"v"}'),
        ("attributes", [{"key": 7}], "span 's': attributes[0].key must be a string, got number 7"),
        ("attributes", [[1]], "span 's': attributes[0] must be an object, got array [1]"),
        ("attributes", [{"key": "k", "value": {"intValue": "9" * 20}}],
         "span 's': attributes[0].value.int_value 99999999999999999999 is outside int64"),
        ("attributes", [{"key": "k", "value": {"boolValue": "yes"}}],
         'span \'s\': attributes[0].value.bool_value must be true or false, got string "yes"'),
        ("attributes", [{"key": "k", "value": {"arrayValue": {"values": [{"doubleValue": "x"}]}}}],
         'span \'s\': attributes[0].value.array_value.values[0].double_value must be a number, got string "x"'),
        ("attributes", [{"key": "k", "value": {"kvlistValue": {"values": [{"key": None, "value": 1}]}}}],
         "span 's': attributes[0].value.kvlist_value.values[0].value must be an object, got number 1"),
        ("events", [{"name": 1}], "span 's': events[0].name must be a string, got number 1"),
        ("events", [{"timeUnixNano": -1}], "span 's': events[0].time_unix_nano -1 is outside uint64"),
        ("events", "e", 'span \'s\': events must be an array, got string "e"'),
    ],
)  # fmt: skip
def test_a_wrong_typed_span_field_rejects_that_span_only(field: str, value, error: str) -> None:
    spans, rejects = decode(json_request(GOOD_SPAN, {**GOOD_SPAN, "spanId": "0102030405060709", field: value}),
                            "otlp_json")  # fmt: skip
    assert [s.span_id for s in spans] == ["0102030405060708"]
    assert [r.error for r in rejects] == [error]


def test_null_is_an_absent_field() -> None:
    nulls = {"name": None, "kind": None, "status": {"code": None, "message": None}, "attributes": None,
             "events": [{"name": None, "attributes": [{"key": "k", "value": None}]}], "parentSpanId": None}  # fmt: skip
    (s,), rejects = decode(json_request({**GOOD_SPAN, **nulls}), "otlp_json")
    assert not rejects
    seen = (s.name, s.kind, s.status_code, s.status_message, s.attributes, s.parent_span_id)
    assert seen == ("", "UNSPECIFIED", "UNSET", None, {}, None)
    assert s.events == [{"name": "", "time_unix_nano": 0, "attributes": {"k": None}}]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (b"[]", "expected an object with a resourceSpans array, got array []"),
        (b'{"resourceSpans": {}}', "expected an object with a resourceSpans array, got object {}"),
        (b'{"resourceSpans": [[]]}', "resourceSpans[0] must be an object, got array []"),
        (json_request(resource=[1]), "resourceSpans[0].resource must be an object, got array [1]"),
        (json_request(resource={"attributes": [{"key": 1}]}),
         "resourceSpans[0].resource.attributes[0].key must be a string, got number 1"),
        (b'{"resourceSpans": [{"scopeSpans": {}}]}', "resourceSpans[0].scopeSpans must be an array, got object {}"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": 1}]}]}',
         "resourceSpans[0].scopeSpans[0].spans must be an array, got number 1"),
    ],
)  # fmt: skip
def test_a_wrong_shape_above_the_spans_is_a_decode_error(value: bytes, error: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(value, "otlp_json")
    assert str(caught.value).endswith(error) and "\n" not in str(caught.value)
