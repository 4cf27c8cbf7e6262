"""The two encodings of an OTLP trace request on the wire, and their media types: Kafka
records (content-type header) and OTLP/HTTP bodies use the same names."""

from __future__ import annotations

from typing import Literal

Encoding = Literal["otlp_proto", "otlp_json"]

# encoding -> the content-type header value spanlake writes
CONTENT_TYPE: dict[Encoding, bytes] = {"otlp_proto": b"application/x-protobuf", "otlp_json": b"application/json"}
# media type -> encoding, for what readers accept
CONTENT_TYPES: dict[str, Encoding] = {
    "application/x-protobuf": "otlp_proto",
    "application/protobuf": "otlp_proto",
    "application/json": "otlp_json",
}
