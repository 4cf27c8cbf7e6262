"""`spanlake dead-letters replay`: after a producer's header mistake dead-lettered messages, a replay
ingests them exactly once, through a crash in the middle and a second replay, and leaves what
still fails dead with its new reason (through the real broker and the real commands)."""

from __future__ import annotations

import subprocess

import polars as pl
from support import SPANLAKE, create_topic, ingest_env, ingest_subprocess, read, send_raw
from test_ingest_bad_input import request, span

from spanlake.exporter import to_otlp_json
from spanlake.settings import Settings

PROTO = [("content-type", b"application/x-protobuf")]
CALL = {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20}
GZIP = b"\x1f\x8b\x08\x00 not an OTLP request"


def spanlake(settings: Settings, *args: str, crash_at: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([SPANLAKE, "dead-letters", *args], env=ingest_env(settings, crash_at=crash_at),
                          capture_output=True, text=True, timeout=180)  # fmt: skip


def ids(frame: pl.DataFrame) -> list[tuple[str, str]]:
    return sorted(zip(frame["trace_id"], frame["span_id"], strict=True))


def test_a_replay_after_a_header_mistake_ingests_each_letter_once(settings: Settings) -> None:
    create_topic(settings, partitions=2)
    # Roots arrive fine; each trace's model call comes from a producer that labels its JSON as protobuf.
    for p in (0, 1):
        send_raw(settings, [request(span(t, 1)).SerializeToString() for t in (10 + p, 20 + p)], partition=p)
        send_raw(settings, [to_otlp_json(request(span(t, 2, parent=1, **CALL), span(t, 3, parent=2)))
                            for t in (10 + p, 20 + p)], partition=p, headers=PROTO)  # fmt: skip
    send_raw(settings, [GZIP], partition=1)
    run = ingest_subprocess(settings)
    assert run.returncode == 0, run.stderr[-3000:]
    assert read(settings, "span_data").height == 4
    assert read(settings, "ingest_errors").height == 5

    listed = spanlake(settings, "list")
    assert listed.returncode == 0, listed.stderr
    assert "       4  pending     decode  starts with N '{' like OTLP JSON but the content-type header says" in listed.stdout
    assert "5 pending; once the cause is fixed:" in listed.stdout

    # The producer is fixed; the first replay is SIGKILLed right after its span_data commit.
    crashed = spanlake(settings, "replay", crash_at="after_span_data")
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    assert read(settings, "span_data").height == 12  # the replayed spans landed, trace_info's MERGE did not
    assert set(read(settings, "trace_info")["span_count"]) == {1}

    again = spanlake(settings, "replay")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.startswith("replayed 4 dead letters (finishing 1 interrupted replay(s)): ")
    assert "1 still failing; see why with:" in again.stdout

    expected = sorted((f"{t:032x}", f"{s:016x}") for t in (10, 11, 20, 21) for s in (1, 2, 3))
    spans = read(settings, "span_data")
    assert ids(spans) == expected  # each span once, though the crash had written 8 of them already
    assert spans.filter(pl.col("span_id") == f"{2:016x}")["span_type"].unique().to_list() == ["LLM"]
    assert sorted(spans.filter(pl.col("span_id") != f"{1:016x}")["offset"].unique()) == [2, 3]  # their real offsets
    traces = read(settings, "trace_info")
    assert traces.height == 4
    assert traces.select("span_count", "llm_call_count", "input_tokens", "output_tokens", "state").unique().rows() == [
        (3, 1, 100, 20, "OK")
    ]
    assert read(settings, "open_traces").is_empty()
    errors = read(settings, "ingest_errors")
    assert errors.height == 6  # the gzip letter failed again: a new row with today's reason
    assert errors.filter(pl.col("value") == GZIP)["error"].n_unique() == 1
    assert read(settings, "dead_letter_replays").height == 5

    # A second replay writes no span: only the gzip letter is left, and it fails again.
    second = spanlake(settings, "replay", "--filter", "GZIP")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.startswith("replayed 0 dead letters: 0 spans written (0 already stored, 0 rejected), 1 still")
    assert ids(read(settings, "span_data")) == expected
    assert read(settings, "trace_info").sort("trace_id").equals(traces.sort("trace_id"))
    none = spanlake(settings, "replay", "--since", "2999-01-01")
    assert none.returncode == 0 and none.stdout.startswith(f"no dead letters of topic {settings.topic!r} to replay")
    bad = spanlake(settings, "replay", "--since", "yesterday")
    assert bad.returncode == 2 and "'yesterday' is not a date or timestamp" in bad.stderr

    # Live ingest goes on from its own offsets: the replays moved none of them.
    send_raw(settings, [request(span(30, 1)).SerializeToString()], partition=0)
    later = ingest_subprocess(settings)
    assert later.returncode == 0, later.stderr[-3000:]
    assert ids(read(settings, "span_data")) == sorted([*expected, (f"{30:032x}", f"{1:016x}")])
