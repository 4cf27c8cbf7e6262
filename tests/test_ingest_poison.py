"""A poison message never stalls a partition: whatever stage fails for it (decode, one span,
building its rows), it becomes an ingest_errors row naming stage and offset, and every good
message around it, on its partition and the others, lands exactly once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import polars as pl
from kafka.consumer.fetcher import ConsumerRecord
from support import create_topic, ingest_subprocess, read, send_raw
from test_ingest_bad_input import request, span

from spanlake.exporter import to_otlp_json
from spanlake.ingest.sink import DeltaSink
from spanlake.settings import Settings

JSON = [("content-type", b"application/json")]


def good(trace: int) -> dict[str, Any]:
    """An OTLP JSON request (as a document) with a root span and a child."""
    return orjson.loads(to_otlp_json(request(span(trace, 1), span(trace, 2, parent=1, k="v"))))


def poisoned(trace: int, **child: Any) -> bytes:
    """A good request whose child span has `child` set: the root still lands, the child is rejected."""
    doc = good(trace)
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][1].update(child)
    return orjson.dumps(doc)


def span_ids(trace: int) -> set[tuple[str, str]]:
    return {(f"{trace:032x}", f"{s:016x}") for s in (1, 2)}


def test_a_poison_message_never_stalls_a_partition(settings: Settings) -> None:
    create_topic(settings, partitions=3)
    structurally_broken = orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": {"not": "an array"}}]}]})
    partition_0 = [
        orjson.dumps(good(1)),  # 0
        poisoned(2, name=123),  # 1
        poisoned(3, status={"code": 2, "message": 123}),  # 2
        poisoned(4, attributes=[{"key": 7, "value": {"stringValue": "x"}}]),  # 3
        poisoned(5, startTimeUnixNano=["1764000000000000000"]),  # 4
        structurally_broken,  # 5
        poisoned(6, name=None),  # 6: null is "absent" in OTLP JSON, a span named ""
        orjson.dumps(good(7)),  # 7
    ]
    send_raw(settings, partition_0, partition=0, headers=JSON)
    send_raw(settings, [orjson.dumps(good(t)) for t in (10, 11)], partition=1, headers=JSON)
    send_raw(settings, [orjson.dumps(good(t)) for t in (20, 21)], partition=2, headers=JSON)

    run = ingest_subprocess(settings)
    assert run.returncode == 0, run.stderr[-3000:]

    stored = read(settings, "span_data")
    expected = set().union(*(span_ids(t) for t in (1, 6, 7, 10, 11, 20, 21)))
    expected |= {(f"{t:032x}", f"{1:016x}") for t in (2, 3, 4, 5)}  # the poisoned spans' neighbours
    assert stored.height == len(expected)  # exactly once
    assert set(zip(stored["trace_id"], stored["span_id"])) == expected
    assert stored.filter(pl.col("trace_id") == f"{6:032x}", pl.col("span_id") == f"{2:016x}")["name"].item() == ""
    assert set(stored.filter(pl.col("partition") != 0)["trace_id"]) == {f"{t:032x}" for t in (10, 11, 20, 21)}
    assert read(settings, "trace_info").height == 11

    errors = read(settings, "ingest_errors").sort("offset")
    assert errors.select("partition", "offset", "stage").rows() == [
        (0, 1, "span"), (0, 2, "span"), (0, 3, "span"), (0, 4, "span"), (0, 5, "decode"),
    ]  # fmt: skip
    error = dict(zip(errors["offset"], errors["error"]))
    assert error[1] == "span resourceSpans[0].scopeSpans[0].spans[1]: name must be a string, got number 123"
    assert error[2] == "span 'span-2': status.message must be a string, got number 123"
    assert error[3] == "span 'span-2': attributes[0].key must be a string, got number 7"
    assert error[4].startswith("span 'span-2': start_time_unix_nano must be an integer or a decimal string, got array")
    assert error[5] == (
        "malformed OTLP JSON ExportTraceServiceRequest: resourceSpans[0].scopeSpans[0].spans must be an array, "
        'got object {"not":"an array"}'
    )
    assert errors.filter(pl.col("offset") == 5)["value"].item() == structurally_broken  # the raw bytes, to replay
    assert errors.filter(pl.col("stage") == "span")["span_id"].to_list() == [None] + [f"{2:016x}"] * 3

    # a restart ingests nothing twice, and what comes next still lands
    send_raw(settings, [orjson.dumps(good(8))], partition=0, headers=JSON)
    again = ingest_subprocess(settings)
    assert again.returncode == 0, again.stderr[-3000:]
    stored = read(settings, "span_data")
    assert stored.height == len(expected) + 2
    assert set(zip(stored["trace_id"], stored["span_id"])) == expected | span_ids(8)
    assert read(settings, "ingest_errors").height == errors.height
    assert read(settings, "trace_info").height == 12


def record(offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord("t", 0, -1, offset, 0, 0, b"key", value, [], None, 0, 0, 0)


def test_a_message_whose_rows_cannot_be_built_is_a_dead_letter(tmp_path: Path) -> None:
    """Past decode, nothing about one message may fail the batch: a span that conventions or
    Arrow cannot take (here planted after decode, as a decoder or conventions bug would) makes
    its message a dead letter of stage "rows" with its raw bytes, and the rest commits."""
    sink = DeltaSink(str(tmp_path), group="g", topic="t")
    sink.load_offsets([0])
    values = [request(span(100 + o, 1), span(100 + o, 2, parent=1)).SerializeToString() for o in range(4)]
    decoded = sink.decode([record(o, v) for o, v in enumerate(values)])
    decoded[1].spans[1].status_message = 123  # type: ignore[assignment]  # Arrow refuses it
    decoded[2].spans[0].attributes = {5: "x"}  # conventions' tags need string keys
    result = sink.commit(decoded)
    assert (result.spans, result.dead_letters) == (4, 2)

    spans = pl.read_delta(str(tmp_path / "span_data"))
    assert sorted(spans["offset"]) == [0, 0, 3, 3]
    assert pl.read_delta(str(tmp_path / "trace_info")).height == 2
    errors = pl.read_delta(str(tmp_path / "ingest_errors")).sort("offset")
    assert errors.select("offset", "stage", "value", "key").rows() == [
        (1, "rows", values[1], b"key"), (2, "rows", values[2], b"key"),
    ]  # fmt: skip
    assert errors["error"][0] == "ArrowTypeError: Expected bytes, got a 'int' object (column status_message)"
    assert errors["error"][1].startswith("span 'span-1' (0000000000000001): AttributeError:")

    # the next batch goes on from there: nothing is re-read or written twice
    assert sink.load_offsets([0]) == {0: 4}
