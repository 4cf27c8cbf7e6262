"""Through the real broker: records without headers (as the Collector's Kafka exporter writes them,
whatever its `encoding`) are ingested in whichever encoding their bytes are, with no setting; bytes
of neither encoding, or contradicting their header, are dead letters saying what to change."""

from __future__ import annotations

import polars as pl
from support import create_topic, ingest_subprocess, read, send_raw
from test_ingest_bad_input import request, span

from spanlake.exporter import to_otlp_json
from spanlake.settings import Settings

PROTO = [("content-type", b"application/x-protobuf")]


def trace(t: int, **attrs):
    return request(span(t, 1), span(t, 2, parent=1, **attrs))


def test_both_encodings_without_headers_and_no_setting(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    model_call = {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 3}
    values = [
        trace(1).SerializeToString(),  # 0
        to_otlp_json(trace(2, **model_call)),  # 1: a hand-made model call, in JSON
        b"\xef\xbb\xbf\n" + to_otlp_json(trace(3)),  # 2: a BOM and a newline first
        b"\x1f\x8b\x08\x00 gzip",  # 3
        to_otlp_json(trace(4)),  # 4: sent with a protobuf header below
        trace(5, **model_call).SerializeToString(),  # 5
    ]
    send_raw(settings, values[:4])
    send_raw(settings, [values[4]], headers=PROTO)
    send_raw(settings, [values[5]])
    run = ingest_subprocess(settings)  # no SPANLAKE_ENCODING: ingest_env sets none
    assert run.returncode == 0, run.stderr[-3000:]

    spans = read(settings, "span_data")
    assert sorted(spans["offset"]) == [0, 0, 1, 1, 2, 2, 5, 5]
    assert set(spans["trace_id"]) == {f"{t:032x}" for t in (1, 2, 3, 5)}
    traces = read(settings, "trace_info").sort("trace_id")
    assert traces.select("span_count", "llm_call_count", "input_tokens", "total_tokens").rows() == [
        (2, 0, None, None), (2, 1, 7, 10), (2, 0, None, None), (2, 1, 7, 10),
    ]  # fmt: skip
    errors = read(settings, "ingest_errors").sort("offset")
    assert errors.select("offset", "stage").rows() == [(3, "decode"), (4, "decode")]
    assert errors["error"].to_list() == [
        "neither OTLP protobuf (first byte 0x1f is not field 1's tag 0x0a) nor OTLP JSON (does not start with '{') "
        "(9 bytes): it is gzip-compressed: send it uncompressed (Kafka's own producer compression is fine)",
        "starts with 0x7b '{' like OTLP JSON but the content-type header says application/x-protobuf: fix the "
        "producer's header (`spanlake dead-letters replay` then ingests this one)",
    ]
    assert errors.filter(pl.col("offset") == 4)["value"].item() == values[4]  # kept, to replay


def test_the_old_encoding_setting_is_accepted_and_says_it_is_unused(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    send_raw(settings, [to_otlp_json(trace(1))])
    run = ingest_subprocess(settings, env={"SPANLAKE_ENCODING": "otlp_proto"})  # the Collector story's workaround
    assert run.returncode == 0, run.stderr[-3000:]
    assert "SPANLAKE_ENCODING is no longer used" in run.stderr
    assert read(settings, "span_data").height == 2
