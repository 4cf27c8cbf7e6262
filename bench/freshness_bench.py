"""Freshness benchmark: time from produce to visible in Delta under a steady load.

A producer sends OTLP protobuf messages (~100 spans, whole traces) at --rate spans/s for
--seconds to a real local broker while one `spanlake ingest` process (its own process, default
settings) runs. Each message's freshness is the `committed_at` of the ingest_batches row whose
offset range holds it (written after that batch's trace_info commit, so an upper bound on
when its traces became visible in trace_info) minus the time the producer sent it (the Kafka
record timestamp). Reports p50/p95/p99 over all messages after a warm-up.

    .venv/bin/python bench/freshness_bench.py --rate 5000 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
from kafka import KafkaProducer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spanlake.broker import free_port, start_broker, stop_broker
from spanlake.ingest.producer import ensure_topic
from spanlake.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))
from ingest_bench import build_messages  # noqa: E402


def produce_steadily(bootstrap: str, topic: str, messages: list[bytes], spans_per_message: float, rate: float,
                     seconds: float) -> dict[tuple[int, int], float]:  # fmt: skip
    """Send at `rate` spans/s; returns {(partition, offset): send time (epoch s)}."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, max_request_size=1 << 24)
    per_second = rate / spans_per_message
    sent: list[tuple[object, float]] = []
    began = time.monotonic()
    i = 0
    while time.monotonic() - began < seconds:
        due = began + i / per_second
        if (delay := due - time.monotonic()) > 0:
            time.sleep(delay)
        sent.append((producer.send(topic, fresh_copy(messages[i % len(messages)], i // len(messages))), time.time()))
        i += 1
    producer.flush()
    out = {}
    for future, at in sent:
        meta = future.get(timeout=30)
        out[(meta.partition, meta.offset)] = at
    producer.close()
    return out


def fresh_copy(message: bytes, round_: int) -> bytes:
    """The message as new traffic for each pass over the corpus: new trace ids, and times moved
    on by a pass's length (so the spans are new and arrive in time order, as in production)."""
    if round_ == 0:
        return message
    request = ExportTraceServiceRequest.FromString(message)
    salt = round_.to_bytes(16, "big")
    shift = round_ * CORPUS_SPAN_NS
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.trace_id = bytes(a ^ b for a, b in zip(span.trace_id, salt))
                span.start_time_unix_nano += shift
                span.end_time_unix_nano += shift
                for event in span.events:
                    event.time_unix_nano += shift
    return request.SerializeToString()


CORPUS_SPAN_NS = 3_600 * 10**9  # build_messages spreads its traces over less than an hour


def visible_at(warehouse: str) -> dict[tuple[int, int], float]:
    batches = pl.read_delta(f"{warehouse}/ingest_batches").explode("offsets").unnest("offsets")
    out = {}
    for row in batches.iter_rows(named=True):
        committed = row["committed_at"].timestamp()
        for offset in range(row["first_offset"], row["last_offset"] + 1):
            out[(row["partition"], offset)] = committed
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=5000, help="spans per second (default 5000)")
    parser.add_argument("--seconds", type=float, default=60, help="how long to produce (default 60)")
    parser.add_argument("--warmup", type=float, default=10, help="seconds left out at the start (default 10)")
    parser.add_argument("--partitions", type=int, default=3, help="topic partitions (default 3)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)

    messages, spans = build_messages(20_000, 100)
    per_message = spans / len(messages)
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_broker(port=free_port(), data_dir=Path(tmp) / "kafka", cache_dir=Settings().cache_dir)
        ingest = None
        try:
            ensure_topic(broker.bootstrap_servers, "fresh", partitions=args.partitions)
            env = {**os.environ, "SPANLAKE_WAREHOUSE": f"{tmp}/wh", "SPANLAKE_TOPIC": "fresh",
                   "SPANLAKE_BOOTSTRAP_SERVERS": broker.bootstrap_servers}  # fmt: skip
            spanlake = str(Path(sys.executable).parent / "spanlake")
            ingest = subprocess.Popen([spanlake, "ingest"], env=env, stderr=subprocess.DEVNULL)
            time.sleep(5)  # joined the group
            print(f"producing {args.rate:,.0f} spans/s for {args.seconds:.0f} s ...", file=sys.stderr)
            sent = produce_steadily(broker.bootstrap_servers, "fresh", messages, per_message, args.rate, args.seconds)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                time.sleep(2)
                seen = visible_at(f"{tmp}/wh")
                if all(k in seen for k in sent):
                    break
        finally:
            if ingest:
                ingest.terminate()
                ingest.wait(timeout=60)
            stop_broker(data_dir=Path(tmp) / "kafka")
    start = min(sent.values()) + args.warmup
    lags = sorted(seen[k] - at for k, at in sent.items() if at >= start and k in seen)
    missing = sum(1 for k in sent if k not in seen)
    q = statistics.quantiles(lags, n=100)
    result = {
        "rate_spans_per_s": args.rate, "seconds": args.seconds, "messages": len(sent), "missing": missing,
        "spans_per_message": round(per_message, 1), "freshness_p50_s": round(q[49], 2),
        "freshness_p95_s": round(q[94], 2), "freshness_p99_s": round(q[98], 2), "freshness_max_s": round(lags[-1], 2),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
