"""Bad input through a real broker: every bad message or span becomes an ingest_errors row with
a reason a person can act on, its neighbours land, and duplicate spans are stored once."""

from __future__ import annotations

import polars as pl
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from support import create_topic, ingest, read, send_raw

from spanlake.settings import Settings

NOW_NS = 1_764_000_000 * 10**9  # 2025-11-24


def request(*spans: Span, service: str = "svc") -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    rs.scope_spans.add().spans.extend(spans)
    return req


def span(trace: int, span_id: int, *, parent: int = 0, start: int = NOW_NS, end: int | None = None, **attrs) -> Span:
    s = Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=span_id.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=f"span-{span_id}",
        start_time_unix_nano=start,
        end_time_unix_nano=end if end is not None else start + 5_000_000,
    )
    for key, value in attrs.items():
        kv = s.attributes.add()
        kv.key = key
        if isinstance(value, int):
            kv.value.int_value = value
        else:
            kv.value.string_value = value
    return s


def test_each_kind_of_bad_input_is_dead_lettered_with_a_reason(settings: Settings) -> None:
    good = request(span(1, 1), span(1, 2, parent=1)).SerializeToString()
    bad_span_mix = request(
        span(2, 1),  # fine
        Span(trace_id=b"", span_id=(5).to_bytes(8, "big"), name="no trace id", start_time_unix_nano=NOW_NS,
             end_time_unix_nano=NOW_NS + 1),
        Span(trace_id=b"\x01" * 15, span_id=(6).to_bytes(8, "big"), name="short trace id",
             start_time_unix_nano=NOW_NS, end_time_unix_nano=NOW_NS + 1),
        span(2, 7, parent=1, start=0, end=1),  # timestamps of 0
        span(2, 8, parent=1, start=16_725_225_600 * 10**9),  # year 2500 (year 3000 overflows fixed64 ns)
        span(2, 9, parent=1, start=NOW_NS, end=NOW_NS - 1),  # ends before it starts
    ).SerializeToString()  # fmt: skip
    huge = request(span(3, 1, big="x" * 5_000_000)).SerializeToString()
    non_utf8 = good.replace(b"span-1", b"span\xff1")  # invalid UTF-8 inside a proto string field
    messages = [good, b"\x00\x01 not protobuf", good[: len(good) // 2], bad_span_mix, huge, non_utf8, b""]
    create_topic(settings, partitions=1)
    send_raw(settings, messages)
    ingest(settings)

    errors = read(settings, "ingest_errors").sort("offset", "span_id")
    by_offset = errors.group_by("offset").agg(pl.col("error")).sort("offset")
    reasons = {row["offset"]: " | ".join(row["error"]) for row in by_offset.iter_rows(named=True)}
    assert set(reasons) == {1, 2, 3, 5, 6}
    assert "neither OTLP protobuf (first byte 0x00" in reasons[1]
    assert "not an OTLP protobuf" in reasons[2]  # truncated
    assert "trace_id must be 16 non-zero bytes, got 0 bytes" in reasons[3]
    assert "trace_id must be 16 non-zero bytes, got 15 bytes" in reasons[3]
    assert "start_time_unix_nano 0 is outside" in reasons[3]
    assert "outside 2000-01-01..2100-01-01" in reasons[3]
    assert "is before start_time_unix_nano" in reasons[3]
    assert "not an OTLP protobuf" in reasons[5]  # non-UTF-8 string
    assert "empty message" in reasons[6]
    assert errors.filter(pl.col("offset") == 3)["value"].null_count() == 5  # span rejects carry no payload

    spans = read(settings, "span_data")
    assert sorted(spans["offset"].to_list()) == [0, 0, 3, 4]
    assert spans.filter(pl.col("offset") == 4)["attributes"].str.len_bytes().item() > 5_000_000
    batches = read(settings, "ingest_batches")
    assert batches["messages"].sum() == len(messages)
    assert batches["dead_letters"].sum() == errors.height


def test_duplicate_spans_are_stored_once(settings: Settings) -> None:
    first = request(span(10, 1), span(10, 2, parent=1, **{"gen_ai.operation.name": "chat",
                                                           "gen_ai.usage.input_tokens": 7}))  # fmt: skip
    create_topic(settings, partitions=2)
    send_raw(settings, [first.SerializeToString()], partition=0)
    ingest(settings)
    # a producer retry on the other partition, a message repeating a span inside itself, and one new span
    again = first.SerializeToString()
    mixed = request(span(10, 2, parent=1), span(10, 2, parent=1), span(10, 3, parent=1)).SerializeToString()
    send_raw(settings, [again, mixed], partition=1)
    ingest(settings)

    spans = read(settings, "span_data")
    assert sorted(spans["span_id"]) == [f"{i:016x}" for i in (1, 2, 3)]
    trace = read(settings, "trace_info").row(0, named=True)
    assert (trace["span_count"], trace["input_tokens"], trace["state"]) == (3, 7, "OK")
    assert read(settings, "ingest_batches")["duplicate_spans"].sum() == 4  # 2 in the retry, 2 in `mixed`


@pytest.mark.parametrize("encoding", ["otlp_json"])
def test_bad_json_is_dead_lettered(settings: Settings, encoding: str) -> None:
    create_topic(settings, partitions=1)
    headers = [("content-type", b"application/json")]
    year_3000 = (
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "0102030405060708090a0b0c0d0e0f10", '
        b'"spanId": "0102030405060708", "name": "late", "startTimeUnixNano": "32503680000000000000", '
        b'"endTimeUnixNano": "32503680000000000001"}]}]}]}'
    )
    send_raw(settings, [b"{not json", b'{"resourceSpans": 5}', b'{"resourceSpans": [{"scopeSpans": [{"spans": '
                        b'[{"traceId": "zz", "spanId": "0102030405060708"}]}]}]}', year_3000], headers=headers)  # fmt: skip
    ingest(settings)
    errors = read(settings, "ingest_errors").sort("offset")
    assert errors["offset"].to_list() == [0, 1, 2, 3]
    assert "not an OTLP JSON" in errors["error"][0]
    assert "span ''" in errors["error"][2] and "trace_id" in errors["error"][2]
    assert "span 'late': start_time_unix_nano 32503680000000000000 is outside" in errors["error"][3]
