"""Ingest benchmark: spans per second, end to end, through a real local broker into Delta.

Each round: a fresh topic is filled with OTLP protobuf messages of ~100 spans each (traces
from the synthetic workload), then `SpanIngestor --until-idle` drains it into a fresh
warehouse; the clock runs from the ingest start until the last Delta commit. Decode-only
throughput on the same messages is measured in the same run, so the two compare as a ratio
on a noisy machine. Medians over --rounds are reported.

    .venv/bin/python bench/ingest_bench.py --spans 100000 --rounds 3
    .venv/bin/python bench/ingest_bench.py --spans 200000 --partitions 6 --processes 2
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from kafka import KafkaProducer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanlake.broker import free_port, start_broker, stop_broker
from spanlake.ingest.otlp import decode
from spanlake.ingest.producer import ensure_topic
from spanlake.ingest.service import SpanIngestor
from spanlake.ingest.workload import Workload
from spanlake.settings import Settings


def build_messages(spans_wanted: int, spans_per_message: int) -> tuple[list[bytes], int]:
    gc.disable()  # hundreds of thousands of live spans: the cyclic GC would make this quadratic
    try:
        return _build_messages(spans_wanted, spans_per_message)
    finally:
        gc.enable()


def _build_messages(spans_wanted: int, spans_per_message: int) -> tuple[list[bytes], int]:
    memory = InMemorySpanExporter()
    workload = Workload(memory, seed=42)
    i = 0
    while i % 500 or len(memory.get_finished_spans()) < spans_wanted:  # (a copy: look rarely)
        workload.emit_trace(i, 50)
        i += 1
        if i % 500 == 0:
            for p in workload.providers.values():
                p.force_flush()
    workload.shutdown()
    # whole traces, in the order the app started them: production traffic arrives in time order
    spans = sorted(memory.get_finished_spans(), key=lambda s: (s.context.trace_id, s.start_time))
    first_start = {}
    for s in spans:
        first_start.setdefault(s.context.trace_id, s.start_time)
    spans.sort(key=lambda s: (first_start[s.context.trace_id], s.context.trace_id))
    messages, group, last_trace = [], [], None
    for s in spans:  # whole traces per message, about spans_per_message spans each
        if len(group) >= spans_per_message and s.context.trace_id != last_trace:
            messages.append(encode_spans(group).SerializeToString())
            group = []
        group.append(s)
        last_trace = s.context.trace_id
    if group:
        messages.append(encode_spans(group).SerializeToString())
    return messages, len(spans)


def fill_topic(bootstrap: str, topic: str, messages: list[bytes], partitions: int) -> None:
    ensure_topic(bootstrap, topic, partitions=partitions)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20, max_request_size=1 << 24)
    for m in messages:
        producer.send(topic, m)
    producer.flush()
    producer.close()


def decode_rate(messages: list[bytes], spans: int) -> float:
    began = time.perf_counter()
    for m in messages:
        decode(m, "otlp_proto")
    return spans / (time.perf_counter() - began)


def run_ingest(settings: Settings, processes: int) -> float:
    """Seconds until the topic is in Delta: in this process, or in N `spanlake ingest
    --until-idle` processes of one consumer group (each exits once the warehouse holds it all)."""
    if processes == 1:
        began = time.perf_counter()
        SpanIngestor(settings, until_idle=True).run()
        return time.perf_counter() - began
    env = {**os.environ, "SPANLAKE_WAREHOUSE": settings.warehouse, "SPANLAKE_TOPIC": settings.topic,
           "SPANLAKE_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "SPANLAKE_GROUP": settings.group}  # fmt: skip
    spanlake = str(Path(sys.executable).parent / "spanlake")
    began = time.perf_counter()
    procs = [subprocess.Popen([spanlake, "ingest", "--until-idle"], env=env, stderr=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL) for _ in range(processes)]  # fmt: skip
    codes = [p.wait() for p in procs]
    assert codes == [0] * processes, codes
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=100_000, help="spans per round (default 100000)")
    parser.add_argument("--spans-per-message", type=int, default=100, help="spans per Kafka message (default 100)")
    parser.add_argument("--partitions", type=int, default=3, help="topic partitions (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported (default 3)")
    parser.add_argument("--processes", type=int, default=1,
                        help="ingest processes in one consumer group (default 1: in this process)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)

    print(f"building ~{args.spans} spans of workload ...", file=sys.stderr)
    messages, spans = build_messages(args.spans, args.spans_per_message)
    mb = sum(map(len, messages)) / 1e6
    print(f"{len(messages)} messages, {spans} spans, {mb:.1f} MB", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_broker(port=free_port(), data_dir=Path(tmp) / "kafka", cache_dir=Settings().cache_dir)
        try:
            ingest_rates, decode_rates = [], []
            for r in range(args.rounds):
                topic = f"bench-{r}"
                fill_topic(broker.bootstrap_servers, topic, messages, args.partitions)
                settings = Settings(
                    warehouse=f"{tmp}/wh-{r}", bootstrap_servers=broker.bootstrap_servers, topic=topic, group=f"bench-{r}"
                )
                elapsed = run_ingest(settings, args.processes)
                stored = pl.scan_delta(f"{settings.warehouse}/span_data").select(pl.len()).collect().item()
                assert stored == spans, (stored, spans)
                ingest_rates.append(spans / elapsed)
                decode_rates.append(decode_rate(messages, spans))
                print(f"round {r + 1}: ingest {ingest_rates[-1]:,.0f} spans/s, "
                      f"decode only {decode_rates[-1]:,.0f} spans/s", file=sys.stderr)  # fmt: skip
        finally:
            stop_broker(data_dir=Path(tmp) / "kafka")
    result = {
        "spans": spans, "messages": len(messages), "megabytes": round(mb, 1), "partitions": args.partitions,
        "processes": args.processes,
        "rounds": args.rounds, "ingest_spans_per_s_median": round(statistics.median(ingest_rates)),
        "decode_spans_per_s_median": round(statistics.median(decode_rates)),
        "ingest_over_decode": round(statistics.median(ingest_rates) / statistics.median(decode_rates), 2),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
