"""End to end through a real broker: spans produced by KafkaSpanExporter land in span_data
exactly once and in trace_info once per trace, also across crashes and split traces."""

from __future__ import annotations

import signal
from collections import defaultdict

import polars as pl
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from support import TeeExporter, assert_exact, create_topic, ingest, ingest_subprocess, read, send_raw

from spanlake.exporter import KafkaSpanExporter, encode
from spanlake.ingest.faults import CRASH_POINTS
from spanlake.ingest.workload import Workload
from spanlake.settings import Settings


def produce_workload(settings: Settings, traces: int, *, seed: int, encoding: str = "otlp_proto") -> TeeExporter:
    tee = TeeExporter(KafkaSpanExporter(settings.bootstrap_servers, settings.topic, encoding=encoding))
    Workload(tee, seed=seed).run(traces)
    return tee


def expected_traces(spans) -> dict[str, dict]:
    """The oracle: per-trace facts computed from the SDK's own spans, not from spanlake code."""
    by_trace = defaultdict(list)
    for s in spans:
        by_trace[f"{s.context.trace_id:032x}"].append(s)
    out = {}
    for tid, group in by_trace.items():
        root = next(s for s in group if s.parent is None)
        calls = [s for s in group if s.attributes.get("gen_ai.operation.name") in ("chat", "embeddings")]
        errors = [
            s for s in group
            if s.status.status_code == StatusCode.ERROR or "error.type" in s.attributes
            or any(e.name == "exception" for e in s.events)
        ]  # fmt: skip
        start, end = min(s.start_time for s in group), max(s.end_time for s in group)
        out[tid] = {
            "span_count": len(group),
            "error_count": len(errors),
            "llm_call_count": len(calls),
            "state": "ERROR" if root.status.status_code == StatusCode.ERROR else "OK",
            "root_span_name": root.name,
            "duration_ms": (end // 1000 - start // 1000) / 1000,
            "input_tokens": sum(s.attributes.get("gen_ai.usage.input_tokens", 0) for s in calls),
            "output_tokens": sum(s.attributes.get("gen_ai.usage.output_tokens", 0) for s in calls) or None,
            "models": {s.attributes.get("gen_ai.response.model") or s.attributes["gen_ai.request.model"] for s in calls},
        }
    return out


@pytest.mark.slow
def test_two_thousand_traces_land_exactly_once(settings: Settings) -> None:
    create_topic(settings, partitions=3)
    tee = produce_workload(settings, 2000, seed=7)
    stats = ingest(settings)

    spans = read(settings, "span_data")
    assert stats.spans == len(tee.spans) == spans.height
    assert spans.select("trace_id", "span_id").is_duplicated().sum() == 0
    assert spans["partition"].n_unique() == 3
    produced = {
        f"{s.context.span_id:016x}": (
            f"{s.context.trace_id:032x}",
            f"{s.parent.span_id:016x}" if s.parent else None,
            s.name,
            s.attributes.get("gen_ai.usage.input_tokens"),
            s.attributes.get("gen_ai.usage.output_tokens"),
            s.attributes.get("gen_ai.response.model") or s.attributes.get("gen_ai.request.model"),
        )
        for s in tee.spans
    }
    stored = {
        r["span_id"]: (r["trace_id"], r["parent_span_id"], r["name"], r["input_tokens"], r["output_tokens"], r["model"])
        for r in spans.iter_rows(named=True)
    }
    assert stored == produced

    traces = read(settings, "trace_info")
    expected = expected_traces(tee.spans)
    assert traces.height == len(expected) == 2000
    assert traces["trace_id"].is_unique().all()
    for row in traces.iter_rows(named=True):
        want = expected[row["trace_id"]]
        got = {k: row[k] for k in want if k not in ("models", "duration_ms", "input_tokens")}
        assert got == {k: v for k, v in want.items() if k not in ("models", "duration_ms", "input_tokens")}
        assert set(row["models"]) == want["models"]
        assert row["duration_ms"] == pytest.approx(want["duration_ms"], abs=0.002)
        assert (row["input_tokens"] or 0) == want["input_tokens"]
    assert set(traces["state"]) == {"OK", "ERROR"}  # the workload has a few percent of errors
    assert traces.filter(pl.col("state") == "OK")["error_count"].max() > 0  # failed tools under OK roots


def test_json_encoding_is_ingested_by_its_content_type(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    tee = produce_workload(settings, 30, seed=3, encoding="otlp_json")
    ingest(settings)  # settings.encoding stays otlp_proto: the header decides
    spans = read(settings, "span_data")
    assert sorted(spans["span_id"]) == sorted(f"{s.context.span_id:016x}" for s in tee.spans)
    attrs = spans.filter(pl.col("span_type") == "CHAT_MODEL")["attributes"].str.json_decode(infer_schema_length=None)
    assert attrs.struct.field("gen_ai.usage.input_tokens").dtype.is_integer()  # typed values survive JSON


def test_trace_split_across_two_ingest_runs_converges(settings: Settings) -> None:
    create_topic(settings, partitions=1)
    memory = InMemorySpanExporter()
    workload = Workload(memory, seed=11)
    workload.emit_trace(0, 1000)
    workload.shutdown()
    spans = memory.get_finished_spans()
    root = next(s for s in spans if s.parent is None)
    children = [s for s in spans if s.parent is not None]
    assert children, "the chosen seed must give a trace with children"
    kafka = KafkaSpanExporter(settings.bootstrap_servers, settings.topic)

    kafka.export(children)  # first the children ...
    ingest(settings)
    first = read(settings, "trace_info")
    assert first.height == 1
    assert first.row(0, named=True)["state"] == "IN_PROGRESS"
    assert first.row(0, named=True)["span_count"] == len(children)

    kafka.export([root])  # ... then, in a later run, the root
    ingest(settings)
    row = read(settings, "trace_info").row(0, named=True)
    expected = expected_traces(spans)[f"{root.context.trace_id:032x}"]
    assert read(settings, "trace_info").height == 1
    assert row["span_count"] == expected["span_count"] == len(spans)
    assert row["state"] == expected["state"]
    assert row["root_span_name"] == root.name
    assert row["request_time"].timestamp() == pytest.approx(root.start_time / 1e9, abs=1e-6)
    assert row["duration_ms"] == pytest.approx(expected["duration_ms"], abs=0.002)
    assert row["user_id"] == root.attributes["user.id"]
    assert row["request_preview"] == root.attributes["input.value"]
    kafka.shutdown()


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_sigkill_mid_batch_then_restart_leaves_no_duplicate_and_no_gap(settings: Settings, crash_at: str) -> None:
    create_topic(settings, partitions=2)
    tee = produce_workload(settings, 120, seed=5)
    settings = settings.model_copy(update={"flush_spans": 200})  # several batches

    crashed = ingest_subprocess(settings, crash_at=crash_at)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    partial = read(settings, "span_data").height
    assert partial < len(tee.spans)
    assert (partial == 0) == (crash_at == "before_commit")

    # smaller batches on restart: the first ones lie wholly below what span_data holds, and
    # must not move its offset back (Delta would accept that and re-read what it holds)
    finished = ingest_subprocess(settings.model_copy(update={"flush_spans": 60}))
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert_exact(settings, tee.spans)
    assert read(settings, "trace_info").height == len(expected_traces(tee.spans))


def test_garbage_message_is_dead_lettered_and_the_partition_goes_on(settings: Settings) -> None:
    memory = InMemorySpanExporter()
    workload = Workload(memory, seed=2)
    for i in range(2):
        workload.emit_trace(i, 1000)
    workload.shutdown()
    spans = memory.get_finished_spans()
    first = [s for s in spans if s.context.trace_id == spans[0].context.trace_id]
    second = [s for s in spans if s.context.trace_id != spans[0].context.trace_id]
    garbage = b"\x0a\xff\xff\xff\xffnot protobuf at all"

    create_topic(settings, partitions=1)
    send_raw(settings, [encode(encode_spans(first), "otlp_proto"), garbage, encode(encode_spans(second), "otlp_proto")])
    ingest(settings)

    errors = read(settings, "ingest_errors")
    assert errors.height == 1
    letter = errors.row(0, named=True)
    assert (letter["topic"], letter["partition"], letter["offset"]) == (settings.topic, 0, 1)
    assert letter["value"] == garbage
    assert "not an OTLP protobuf ExportTraceServiceRequest" in letter["error"]
    stored = read(settings, "span_data")
    assert stored.height == len(spans)
    assert sorted(stored.filter(pl.col("offset") == 2)["span_id"]) == sorted(f"{s.context.span_id:016x}" for s in second)
    assert read(settings, "trace_info").height == 2
