"""Each message's encoding from its content-type header, else from its bytes (ingest/encodings.py)."""

from __future__ import annotations

import pytest
from test_ingest_bad_input import request, span

from spanlake.errors import DecodeError
from spanlake.exporter import to_otlp_json
from spanlake.ingest.encodings import encoding_of, frames_as_proto
from spanlake.ingest.otlp import decode

PROTO = [("content-type", b"application/x-protobuf")]
JSON = [("content-type", b"application/json; charset=utf-8")]
REQUEST = request(span(1, 1), span(1, 2, parent=1))


def resource_spans_of_length(n: int) -> bytes:
    """A real request whose one resource_spans field is `n` bytes long (padded by service name)."""
    for size in range(n):
        value = request(span(1, 1), service="s" * size).SerializeToString()
        if value[1] == n and value[0] == 0x0A:
            return value
    raise AssertionError(n)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (REQUEST.SerializeToString(), "otlp_proto"),
        (to_otlp_json(REQUEST), "otlp_json"),
        (b" \r\n\t" + to_otlp_json(REQUEST), "otlp_json"),
        (b"\xef\xbb\xbf" + to_otlp_json(REQUEST), "otlp_json"),  # a UTF-8 BOM
        (b"\n" + to_otlp_json(REQUEST), "otlp_json"),  # a newline then "{": JSON, since it does not frame
        (resource_spans_of_length(ord("{")), "otlp_proto"),  # 0x0a 0x7b ...: protobuf, since it frames
        (b"", "otlp_proto"),  # an empty request (decode says it is empty)
    ],
)
def test_without_a_header_the_bytes_decide(value: bytes, expected: str) -> None:
    assert encoding_of([], value) == expected
    assert encoding_of(None, value) == expected
    if value:
        spans, rejects = decode(value, encoding_of([], value))
        assert (len(spans) + len(rejects), rejects) == (len(spans), [])


def test_a_header_that_agrees_or_settles_an_ambiguous_start_decides() -> None:
    assert encoding_of(PROTO, REQUEST.SerializeToString()) == "otlp_proto"
    assert encoding_of(JSON, to_otlp_json(REQUEST)) == "otlp_json"
    ambiguous = b"\n{" + b"\n" * 123  # frames as protobuf, and is "\n{" then whitespace
    assert frames_as_proto(ambiguous)
    assert (encoding_of([], ambiguous), encoding_of(JSON, ambiguous)) == ("otlp_proto", "otlp_json")


@pytest.mark.parametrize(
    ("headers", "value", "reason"),
    [
        ([], b"\x00\x01 not protobuf",
         "neither OTLP protobuf (first byte 0x00 is not field 1's tag 0x0a) nor OTLP JSON (does not start with '{') "
         "(15 bytes): the producer must send OTLP ExportTraceServiceRequests (encoding otlp_proto or otlp_json)"),
        ([], b"\x1f\x8b\x08\x00", "(first byte 0x1f is not field 1's tag 0x0a) nor OTLP JSON (does not start with "
         "'{') (4 bytes): it is gzip-compressed: send it uncompressed (Kafka's own producer compression is fine)"),
        ([], b' [{"traceId": "1"}]', "first byte 0x20 is not field 1's tag 0x0a) nor OTLP JSON (does not start "
         "with '{') (19 bytes): it is a JSON array, not an OTLP JSON object (Zipkin JSON?)"),
        (PROTO, b'  {"resourceSpans": []}', "starts with 0x7b '{' like OTLP JSON but the content-type header says "
         "application/x-protobuf: fix the producer's header (`spanlake dead-letters replay` then ingests this one)"),
        (JSON, REQUEST.SerializeToString(), "starts with 0x0a like OTLP protobuf but the content-type header says "
         "application/json: fix the producer's header"),
        (JSON, b"<trace/>", "nor OTLP JSON (does not start with '{') (8 bytes) (its content-type header says "
         "application/json)"),
        ([("Content-Type", b"text/plain")], b"{}", "unsupported content-type 'text/plain' (expected one of "
         "application/x-protobuf, application/protobuf, application/json); the bytes look like OTLP JSON: fix the "
         "producer's header"),
        ([("content-type", None)], b"{}", "unsupported content-type ''"),
    ],
)  # fmt: skip
def test_bytes_that_look_like_neither_or_contradict_their_header_say_so(headers, value: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as raised:
        encoding_of(headers, value)
    assert reason in str(raised.value)


def test_frames_as_proto() -> None:
    good = REQUEST.SerializeToString()
    assert frames_as_proto(good) and frames_as_proto(good + good)  # two resource_spans
    assert not frames_as_proto(good[:-1])  # truncated
    assert not frames_as_proto(good + b"\x12\x00")  # another field
    assert not frames_as_proto(b"\n\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")  # a varint past 64 bits
