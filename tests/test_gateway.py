"""The OTLP/HTTP gateway as a real `spanlake gateway` process in front of the real broker: what it
hands to Kafka lands in the tables exactly once, and every answer follows the OTLP/HTTP spec."""

from __future__ import annotations

import gzip
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import SPANLAKE, assert_exact, create_topic, ingest, ingest_env

from spanlake.broker import free_port, start_broker, stop_broker
from spanlake.exporter import to_otlp_json
from spanlake.settings import Settings

PROTO = "application/x-protobuf"


def make_spans(traces: int, per_trace: int = 3) -> list:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "gateway-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for t in range(traces):
        with tracer.start_as_current_span(f"request-{t}"):
            for c in range(per_trace - 1):
                with tracer.start_as_current_span(f"step-{c}", attributes={"gen_ai.request.model": "gpt-4o-mini"}):
                    pass
    provider.shutdown()
    return list(exporter.get_finished_spans())


class Gateway:
    def __init__(self, settings: Settings, log: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        variables = {**ingest_env(settings), **{f"SPANLAKE_{k.upper()}": v for k, v in env.items()}}
        self.proc = subprocess.Popen([SPANLAKE, "gateway", "--port", str(self.port)], env=variables,
                                     stdout=log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=10)
                return
            except urllib.error.HTTPError:
                return  # answering (Kafka may be down on purpose)
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(f"gateway did not start: {log.read_text()}") from None
                time.sleep(0.2)

    def post(self, body: bytes, content_type: str = PROTO, **headers: str) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.url + "/v1/traces", data=body, method="POST",
                                         headers={"Content-Type": content_type, **headers})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def gateway(settings: Settings, tmp_path: Path) -> Iterator[Gateway]:
    create_topic(settings, partitions=3)
    gw = Gateway(settings, tmp_path / "gateway.log", gateway_max_body_bytes=str(256 * 1024))
    try:
        yield gw
    finally:
        gw.stop()


def test_protobuf_and_gzipped_json_land_exactly_once(gateway: Gateway, settings: Settings) -> None:
    spans = make_spans(20)
    first, second = spans[:30], spans[30:]
    status, headers, body = gateway.post(encode_spans(first).SerializeToString())
    assert status == 200 and headers["content-type"] == PROTO
    assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    json_body = gzip.compress(to_otlp_json(encode_spans(second)))
    status, headers, body = gateway.post(json_body, "application/json", **{"Content-Encoding": "gzip"})
    assert status == 200 and headers["content-type"] == "application/json" and orjson.loads(body) == {}
    ingest(settings)
    assert_exact(settings, spans)


def test_records_are_keyed_by_trace_id(gateway: Gateway, settings: Settings) -> None:
    from kafka import KafkaConsumer

    spans = make_spans(5)
    assert gateway.post(encode_spans(spans).SerializeToString())[0] == 200
    consumer = KafkaConsumer(settings.topic, bootstrap_servers=settings.bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)  # fmt: skip
    records = list(consumer)
    consumer.close()
    assert sorted(r.key.decode() for r in records) == sorted({f"{s.context.trace_id:032x}" for s in spans})
    assert {dict(r.headers)["content-type"] for r in records} == {PROTO.encode()}


def test_invalid_spans_are_partial_success(gateway: Gateway, settings: Settings) -> None:
    spans = make_spans(2)
    request = encode_spans(spans)
    bad = request.resource_spans[0].scope_spans[0].spans[0]
    bad.span_id = b"\x00" * 8  # an all-zero span id is invalid
    status, _, body = gateway.post(request.SerializeToString())
    assert status == 200
    partial = ExportTraceServiceResponse.FromString(body).partial_success
    assert partial.rejected_spans == 1 and "span" in partial.error_message
    ingest(settings)
    assert len(ingest_rows(settings)) == len(spans) - 1


def ingest_rows(settings: Settings) -> list:
    from support import read

    return read(settings, "span_data")["span_id"].to_list()


def test_bad_requests_get_the_spec_answers(gateway: Gateway) -> None:
    status, headers, body = gateway.post(b"\xff\xff\xff not protobuf")
    assert status == 400 and headers["content-type"] == PROTO
    assert "not an OTLP protobuf" in Status.FromString(body).message
    status, _, body = gateway.post(b"{not json", "application/json")
    assert status == 400 and "not an OTLP JSON" in orjson.loads(body)["message"]
    assert gateway.post(b"hello", "text/plain")[0] == 415
    assert gateway.post(b"x", PROTO, **{"Content-Encoding": "br"})[0] == 415
    assert gateway.post(b"\0" * (300 * 1024))[0] == 413  # over the 256 KiB limit as sent
    bomb = gzip.compress(b"\0" * (10 * 1024 * 1024))  # 10 KiB on the wire, 10 MiB inflated
    status, _, body = gateway.post(bomb, PROTO, **{"Content-Encoding": "gzip"})
    assert status == 413 and "decompressed" in Status.FromString(body).message
    assert gateway.post(b"")[0] == 200  # an empty request is a success


def test_503_with_retry_after_while_kafka_is_down_then_accepts(
    settings: Settings, tmp_path: Path, kafka_cache_dir: Path
) -> None:
    data_dir, port = tmp_path / "broker", free_port()
    own = start_broker(port=port, data_dir=data_dir, cache_dir=kafka_cache_dir)
    settings = settings.model_copy(update={"bootstrap_servers": own.bootstrap_servers})
    create_topic(settings, partitions=1)
    gw = Gateway(settings, tmp_path / "gateway.log", gateway_send_timeout_seconds="3")
    try:
        spans = make_spans(3)
        assert gw.post(encode_spans(spans[:3]).SerializeToString())[0] == 200
        stop_broker(data_dir=data_dir)
        status, headers, body = gw.post(encode_spans(spans[3:6]).SerializeToString())
        assert status == 503 and 1 <= int(headers["retry-after"]) <= 5
        assert "Kafka" in Status.FromString(body).message
        health = urllib.request.Request(gw.url + "/health")
        with pytest.raises(urllib.error.HTTPError) as down:
            urllib.request.urlopen(health, timeout=30)
        assert down.value.code == 503
        start_broker(port=port, data_dir=data_dir, cache_dir=kafka_cache_dir)
        deadline = time.monotonic() + 60
        while (status := gw.post(encode_spans(spans[3:]).SerializeToString())[0]) != 200:
            assert status == 503 and time.monotonic() < deadline
            time.sleep(1)
        with urllib.request.urlopen(health, timeout=30) as up:
            assert orjson.loads(up.read())["kafka_reachable"] is True
        ingest(settings)
        assert_exact(settings, spans)
    finally:
        gw.stop()
        stop_broker(data_dir=data_dir)
