"""OTLP/HTTP gateway load test: requests/s and spans/s that `spanlake gateway` hands to a real
local broker (200 = Kafka acknowledged), from a load generator in a second process on loopback.

The load generator keeps --concurrency keep-alive connections busy with requests of
--spans-per-request workload spans (OTel's BatchSpanProcessor sends up to 512), protobuf and then
gzipped JSON, until --requests requests or --seconds have passed, whichever comes first.

    .venv/bin/python bench/gateway_bench.py --requests 2000 --spans-per-request 100 --concurrency 8
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanlake.broker import free_port, start_broker, stop_broker
from spanlake.exporter import to_otlp_json
from spanlake.ingest.producer import ensure_topic
from spanlake.ingest.workload import Workload


def bodies(spans_per_request: int, count: int) -> list[bytes]:
    memory = InMemorySpanExporter()
    workload = Workload(memory, seed=3)
    i = 0
    while len(memory.get_finished_spans()) < spans_per_request * count:
        workload.emit_trace(i, 50)
        i += 1
        if i % 200 == 0:
            for p in workload.providers.values():
                p.force_flush()
    workload.shutdown()
    spans = list(memory.get_finished_spans())
    return [encode_spans(spans[k : k + spans_per_request]).SerializeToString()
            for k in range(0, spans_per_request * count, spans_per_request)]  # fmt: skip


def load(port: int, payloads: list[bytes], headers: dict[str, str], requests: int, seconds: float,
         concurrency: int) -> dict[str, float]:  # fmt: skip
    """Runs in the load-generator process: the figures of one encoding."""
    lock, latencies, statuses = threading.Lock(), [], {}
    issued = iter(range(requests))
    deadline = time.monotonic() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for n in issued:
            if time.monotonic() > deadline:
                break
            began = time.perf_counter()
            conn.request("POST", "/v1/traces", body=payloads[n % len(payloads)], headers=headers)
            answer = conn.getresponse()
            answer.read()
            with lock:
                latencies.append(time.perf_counter() - began)
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
        conn.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - began
    ok = statuses.get(200, 0)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {"requests": len(latencies), "ok": ok, "seconds": took, "rps": ok / took, "p50_ms": q[49] * 1e3,
            "p99_ms": q[98] * 1e3, "other_statuses": sum(v for k, v in statuses.items() if k != 200)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--spans-per-request", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--generator", action="store_true", help=argparse.SUPPRESS)  # the second process
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generator:
        payloads = bodies(args.spans_per_request, 20)
        for name, data, headers in (
            ("protobuf", payloads, {"Content-Type": "application/x-protobuf"}),
            ("json+gzip", [gzip.compress(to_otlp_json(_parse(p))) for p in payloads],
             {"Content-Type": "application/json", "Content-Encoding": "gzip"}),
        ):  # fmt: skip
            r = load(args.port, data, headers, args.requests, args.seconds, args.concurrency)
            print(f"| {name} | {r['ok']:,} | {r['rps']:,.0f} | {r['rps'] * args.spans_per_request:,.0f} | "
                  f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['other_statuses']} |", flush=True)  # fmt: skip
        return
    spanlake = str(Path(sys.executable).parent / "spanlake")
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_broker(port=free_port(), data_dir=Path(tmp) / "broker",
                              cache_dir=Path.home() / ".cache" / "spanlake")  # fmt: skip
        port = free_port()
        env = {**os.environ, "SPANLAKE_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "SPANLAKE_TOPIC": "bench"}
        ensure_topic(broker.bootstrap_servers, "bench", partitions=3)
        gateway = subprocess.Popen([spanlake, "gateway", "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10)
                    break
                except OSError:
                    time.sleep(0.2)
            print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
                  f"{args.spans_per_request} spans/request, {args.concurrency} connections, "
                  f"at most {args.requests} requests or {args.seconds:g} s per encoding")  # fmt: skip
            print("| encoding | 200s | requests/s | spans/s | p50 ms | p99 ms | non-200 |\n|---|---|---|---|---|---|---|")
            subprocess.run([sys.executable, __file__, "--generator", "--port", str(port),
                            "--requests", str(args.requests), "--seconds", str(args.seconds),
                            "--spans-per-request", str(args.spans_per_request),
                            "--concurrency", str(args.concurrency)], check=True)  # fmt: skip
        finally:
            gateway.terminate()
            gateway.wait(timeout=30)
            stop_broker(data_dir=Path(tmp) / "broker")


def _parse(body: bytes):  # type: ignore[no-untyped-def]
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return ExportTraceServiceRequest.FromString(body)


if __name__ == "__main__":
    main()
