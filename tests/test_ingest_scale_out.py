"""Several ingest processes in one consumer group, with producers that do not key by trace:
one process killed and one added mid-stream, and still exact counts and one row per trace."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import polars as pl
from kafka import KafkaProducer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import assert_exact, create_topic, read, span_count, start_ingest, wait_for

from spanlake.ingest.workload import Workload
from spanlake.settings import Settings


def test_three_processes_unkeyed_spans_kill_one_add_one(settings: Settings, tmp_path: Path) -> None:
    memory = InMemorySpanExporter()
    workload = Workload(memory, seed=21)
    for i in range(300):
        workload.emit_trace(i, 200)
    workload.shutdown()
    spans = list(memory.get_finished_spans())
    rng = random.Random(5)
    rng.shuffle(spans)  # a trace's spans arrive in any order, on any partition, in any process
    create_topic(settings, partitions=6)

    def produce() -> None:
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
        for i, s in enumerate(spans):
            producer.send(settings.topic, encode_spans([s]).SerializeToString(), partition=rng.randrange(6))
            if i % 200 == 0:
                producer.flush()
                time.sleep(0.3)  # a steady stream, so the membership changes happen mid-stream
        producer.close()

    processes = [start_ingest(settings, tmp_path / f"ingest-{i}.log") for i in range(3)]
    producer = threading.Thread(target=produce)
    producer.start()
    try:
        wait_for(lambda: span_count(settings) > len(spans) // 5, 120, "a fifth of the spans")
        processes[0].send_signal(signal.SIGKILL)
        processes.append(start_ingest(settings, tmp_path / "ingest-3.log"))
        producer.join()
        wait_for(lambda: span_count(settings) >= len(spans), 180, "every span")
        time.sleep(2)  # a duplicate, if any, would land now
    finally:
        for p in processes[1:]:
            p.send_signal(signal.SIGTERM)
        exit_codes = [p.wait(timeout=60) for p in processes[1:]]
        producer.join()
    assert exit_codes == [0, 0, 0], [(tmp_path / f"ingest-{i}.log").read_text()[-3000:] for i in (1, 2, 3)]

    assert_exact(settings, spans)
    traces = read(settings, "trace_info")
    by_trace: dict[str, list] = {}
    for s in spans:
        by_trace.setdefault(f"{s.context.trace_id:032x}", []).append(s)
    assert traces.height == len(by_trace) == 300
    assert traces.filter(pl.col("state") == "IN_PROGRESS").height == 0
    for row in traces.with_columns(pl.col("request_time").dt.epoch("us")).iter_rows(named=True):
        root = next(s for s in by_trace[row["trace_id"]] if s.parent is None)
        assert row["root_span_name"] == root.name
        assert row["request_time"] == root.start_time // 1000
