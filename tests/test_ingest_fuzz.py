"""The whole ingest path under fuzzing, not only decode: hypothesis-generated messages (OTLP
JSON with wrong types in every field, protobuf carrying odd attribute values, mutated protobuf)
go through decode, conventions, row building and a real DeltaSink.commit into a temporary
warehouse. Every message ends up as rows or as dead letters, and nothing raises."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.consumer.fetcher import ConsumerRecord
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from spanlake.errors import DecodeError
from spanlake.ingest import attribute_keys
from spanlake.ingest.encodings import encoding_of
from spanlake.ingest.otlp import MIN_TIME_NS, decode
from spanlake.ingest.sink import DeltaSink

NOW_NS = 1_764_000_000 * 10**9
JSON = [("content-type", b"application/json")]


def _convention_keys() -> list[str]:
    """Every attribute key the conventions look at: the fuzz aims its odd values there."""
    keys: set[str] = set()
    for value in vars(attribute_keys).values():
        if isinstance(value, tuple):
            keys.update(v for v in value if isinstance(v, str))
        elif isinstance(value, type):
            keys.update(v for k, v in vars(value).items() if not k.startswith("_") and isinstance(v, str))
    keys.update(("llm.input_messages.0.message.content", "llm.output_messages.1.message.tool_calls.0.tool_call.id"))
    return sorted(keys)


KEYS = st.sampled_from(_convention_keys()) | st.text(max_size=12)
junk = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
# attribute values as instrumentations write them: numbers, text, JSON text (usage, cost, metadata)
texts = st.text(max_size=20) | junk.map(json.dumps) | st.sampled_from(['"quoted"', "[]", '{"input_tokens": "x"}'])


def sometimes_wrong(good: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(good, good, good, junk)


def hex_id(n: int) -> st.SearchStrategy:
    return st.binary(min_size=n, max_size=n).map(bytes.hex) | st.sampled_from(["", "zz", "00" * n])


times = st.integers(NOW_NS - 10**15, NOW_NS + 10**15) | st.integers(0, 2**65)
json_any = st.deferred(
    lambda: st.one_of(
        st.builds(lambda v: {"stringValue": v}, sometimes_wrong(texts)),
        st.builds(lambda v: {"intValue": v}, sometimes_wrong(st.integers(-(2**64), 2**64).map(str))),
        st.builds(lambda v: {"doubleValue": v}, sometimes_wrong(st.floats(allow_nan=False, allow_infinity=False))),
        st.builds(lambda v: {"boolValue": v}, sometimes_wrong(st.booleans())),
        st.builds(lambda v: {"arrayValue": {"values": v}}, st.lists(json_any, max_size=2)),
        st.builds(lambda v: {"kvlistValue": {"values": v}}, st.lists(json_kv, max_size=2)),
        junk,
    )
)
json_kv = st.fixed_dictionaries({"key": sometimes_wrong(KEYS), "value": json_any})
json_attrs = sometimes_wrong(st.lists(json_kv, max_size=5))
json_span = st.fixed_dictionaries(
    {},
    optional={
        "traceId": sometimes_wrong(hex_id(16)),
        "spanId": sometimes_wrong(hex_id(8)),
        "parentSpanId": sometimes_wrong(hex_id(8)),
        "name": sometimes_wrong(st.text(max_size=10) | st.just("ai.generateText")),
        "kind": sometimes_wrong(st.integers(-1, 7) | st.sampled_from(["SPAN_KIND_CLIENT", "SERVER", "BOGUS"])),
        "startTimeUnixNano": sometimes_wrong(times.map(str)),
        "endTimeUnixNano": sometimes_wrong(times),
        "status": sometimes_wrong(
            st.fixed_dictionaries({}, optional={"code": sometimes_wrong(st.integers(0, 3)), "message": junk})
        ),
        "attributes": json_attrs,
        "events": sometimes_wrong(
            st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "name": sometimes_wrong(st.sampled_from(["exception", "e"])),
                        "timeUnixNano": sometimes_wrong(times),
                        "attributes": json_attrs,
                    },
                ),
                max_size=2,
            )
        ),
    },
)
json_request = st.builds(
    lambda resource, spans: {
        "resourceSpans": [{"resource": {"attributes": resource}, "scopeSpans": [{"spans": spans}]}]
    },
    sometimes_wrong(st.lists(json_kv, max_size=3)),
    st.lists(sometimes_wrong(json_span), max_size=4),
).map(lambda doc: json.dumps(doc).encode())  # stdlib json: integers beyond 64 bits, NaN and all
proto_value = st.recursive(
    st.text(max_size=10)
    | texts
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.booleans()
    | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=5), inner, max_size=2),
    max_leaves=5,
)


def _set_any(target: AnyValue, value) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, list):
        for item in value:
            _set_any(target.array_value.values.add(), item)
    else:
        for key, item in value.items():
            kv = target.kvlist_value.values.add()
            kv.key = key
            _set_any(kv.value, item)


@st.composite
def proto_request(draw) -> bytes:
    """Valid protobuf whose attribute values are anything OTLP can carry, aimed at the conventions' keys."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for key, value in draw(st.dictionaries(KEYS, proto_value, max_size=3)).items():
        kv = rs.resource.attributes.add()
        kv.key = key
        _set_any(kv.value, value)
    scope = rs.scope_spans.add()
    for _ in range(draw(st.integers(0, 4))):
        s = scope.spans.add()
        s.trace_id = draw(st.binary(min_size=16, max_size=16) | st.just(b""))
        s.span_id = draw(st.binary(min_size=8, max_size=8))
        s.parent_span_id = draw(st.just(b"") | st.binary(min_size=8, max_size=8))
        s.name = draw(st.text(max_size=10))
        s.start_time_unix_nano = start = draw(st.integers(MIN_TIME_NS - 10, NOW_NS + 10**15))
        s.end_time_unix_nano = start + draw(st.integers(-5, 10**12))
        s.kind = draw(st.integers(-3, 9))
        s.status.code = draw(st.integers(0, 3))
        for key, value in draw(st.dictionaries(KEYS, proto_value, max_size=6)).items():
            kv = s.attributes.add()
            kv.key = key
            _set_any(kv.value, value)
        for _ in range(draw(st.integers(0, 2))):
            event = s.events.add()
            event.name = draw(st.sampled_from(["exception", "e"]))
    return req.SerializeToString()


@st.composite
def mutated(draw, value: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(value))
    for _ in range(draw(st.integers(1, 3))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


messages = st.one_of(
    json_request.map(lambda v: (v, JSON)),
    proto_request().map(lambda v: (v, [])),
    mutated(proto_request()).map(lambda v: (v, [])),
    mutated(json_request).map(lambda v: (v, JSON)),
    st.tuples(st.binary(max_size=30), st.sampled_from([[], JSON, [("content-type", None)], [("content-type", b"x")]])),
)


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DeltaSink, Path, itertools.count]]:
    """One warehouse for every example: each example is one more batch on partition 0."""
    warehouse = tmp_path_factory.mktemp("fuzz")
    sink = DeltaSink(str(warehouse), group="g", topic="t")
    sink.load_offsets([0])
    yield sink, warehouse, itertools.count()


@given(batch=st.lists(messages, min_size=1, max_size=6))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_every_message_becomes_rows_or_dead_letters(sink, batch: list[tuple[bytes, list]]) -> None:
    sink_, warehouse, offsets = sink
    records = [
        ConsumerRecord("t", 0, -1, next(offsets), 0, 0, None, value, headers, None, 0, 0, 0) for value, headers in batch
    ]
    result = sink_.commit(sink_.decode(records))  # the property's first half: this never raises
    first = records[0].offset

    stored = pl.read_delta(str(warehouse / "span_data")).filter(pl.col("offset") >= first)
    errors = pl.read_delta(str(warehouse / "ingest_errors")).filter(pl.col("offset") >= first)
    assert result.spans == stored.height and result.dead_letters == errors.height
    kept = 0  # spans of messages that became rows
    for r in records:
        letters = errors.filter(pl.col("offset") == r.offset)
        whole = letters.filter(pl.col("stage").is_in(["decode", "rows"]))
        assert whole["value"].to_list() in ([], [r.value])
        assert "\n" not in "".join(letters["error"])
        try:
            spans, rejects = decode(r.value, encoding_of(r.headers, r.value))
        except DecodeError:
            assert whole["stage"].to_list() == ["decode"]
            continue
        assert letters.filter(pl.col("stage") == "span").height == len(rejects)
        if whole.height:
            assert whole["stage"].item() == "rows"
            assert stored.filter(pl.col("offset") == r.offset).height == 0
        else:
            kept += len(spans)
    # every span of a message that became rows is stored, or is a duplicate of one stored
    assert result.spans + result.duplicates == kept
