"""Which encoding a Kafka message is in: its content-type header when it has one, else its bytes.

The OpenTelemetry Collector's Kafka exporter writes no headers at all, so the bytes must say it:
an `ExportTraceServiceRequest` has one field, `resource_spans` (field 1, length-delimited), so its
protobuf starts with that field's tag 0x0a; OTLP JSON is an object, so it starts with `{` (after
whitespace, maybe a UTF-8 byte order mark). Both hold for one pair of starts: a newline then `{`
is JSON with a leading newline, or protobuf whose first resource_spans is 123 bytes long. The
header decides then, else whether the bytes frame as protobuf (every top-level field is a field 1
whose length fits, ending exactly at the end), which JSON text all but never does.

Bytes that look like neither, or like the other encoding than their header says, raise
DecodeError with what they looked like and what to change (they become dead letters).
"""

from __future__ import annotations

from spanlake.encoding import CONTENT_TYPES, Encoding
from spanlake.errors import DecodeError

__all__ = ["CONTENT_TYPES", "Encoding", "encoding_of", "frames_as_proto"]
RESOURCE_SPANS_TAG = 0x0A  # field 1, wire type 2 (length-delimited)
UTF8_BOM = b"\xef\xbb\xbf"
_JSON_WHITESPACE = b" \t\r\n"
_LOOKS = {"otlp_proto": "like OTLP protobuf", "otlp_json": "like OTLP JSON"}
# Starts that are neither, but common enough to name (what to change differs).
_HINTS = {
    b"\x1f\x8b": "it is gzip-compressed: send it uncompressed (Kafka's own producer compression is fine)",
    b"[": "it is a JSON array, not an OTLP JSON object (Zipkin JSON?)",
}


def encoding_of(headers: list[tuple[str, bytes]] | None, value: bytes | None) -> Encoding:
    """The message's encoding: its content-type header's, checked against its bytes, else its bytes'."""
    declared, media = _declared(headers)
    if not value:  # an empty value is an empty protobuf request: decode() says what that means
        return declared or "otlp_proto"
    proto, json = value[0] == RESOURCE_SPANS_TAG, _json_start(value)
    if proto and json:  # "\n{": the header decides, else whether it frames as protobuf
        return declared or ("otlp_proto" if frames_as_proto(value) else "otlp_json")
    looks: Encoding | None = "otlp_proto" if proto else "otlp_json" if json else None
    if media is not None and declared is None:
        seen = f"the bytes look {_LOOKS[looks]}" if looks else f"the bytes are {_neither(value)}"
        raise DecodeError(
            f"unsupported content-type {media!r} (expected one of {', '.join(CONTENT_TYPES)}); {seen}: "
            "fix the producer's header"
        )
    if looks is None:
        said = f" (its content-type header says {media})" if media else ""
        raise DecodeError(f"{_neither(value)} ({len(value)} bytes){said}: {_hint(value)}")
    if declared is not None and declared != looks:
        raise DecodeError(
            f"starts with {_byte(_first_significant(value, looks))} {_LOOKS[looks]} but the content-type header "
            f"says {media}: fix the producer's header (`spanlake dead-letters replay` then ingests this one)"
        )
    return looks


def frames_as_proto(value: bytes) -> bool:
    """Every top-level field is resource_spans with a length that fits, ending exactly at the end."""
    pos, end = 0, len(value)
    while pos < end:
        if value[pos] != RESOURCE_SPANS_TAG:
            return False
        length, shift, pos = 0, 0, pos + 1
        while True:
            if pos >= end or shift > 63:
                return False
            byte = value[pos]
            length |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if byte < 0x80:
                break
        pos += length
    return pos == end


def _declared(headers: list[tuple[str, bytes]] | None) -> tuple[Encoding | None, str | None]:
    """(the encoding the content-type header names, its media type); (None, None) without one."""
    for key, raw in headers or ():
        if key.lower() == "content-type":
            media = (raw or b"").decode("latin-1").split(";")[0].strip().lower()  # a header may have no value
            return CONTENT_TYPES.get(media), media
    return None, None


def _json_start(value: bytes) -> bool:
    return value.removeprefix(UTF8_BOM).lstrip(_JSON_WHITESPACE)[:1] == b"{"


def _first_significant(value: bytes, looks: Encoding) -> int:
    return value.removeprefix(UTF8_BOM).lstrip(_JSON_WHITESPACE)[0] if looks == "otlp_json" else value[0]


def _byte(b: int) -> str:
    return f"0x{b:02x} {chr(b)!r}" if 0x20 < b < 0x7F else f"0x{b:02x}"


def _neither(value: bytes) -> str:
    return (
        f"neither OTLP protobuf (first byte {_byte(value[0])} is not field 1's tag 0x{RESOURCE_SPANS_TAG:02x}) "
        "nor OTLP JSON (does not start with '{')"
    )


def _hint(value: bytes) -> str:
    first = value.removeprefix(UTF8_BOM).lstrip(_JSON_WHITESPACE)[:1]
    for start, hint in _HINTS.items():
        if value.startswith(start) or first == start:
            return hint
    return "the producer must send OTLP ExportTraceServiceRequests (encoding otlp_proto or otlp_json)"
