"""KafkaSpanExporter: an OpenTelemetry SDK SpanExporter that writes OTLP to a Kafka topic.

Use it under the SDK's BatchSpanProcessor so exporting stays off the request path
(`spanlake.instrument` sets that up):

    provider.add_span_processor(BatchSpanProcessor(KafkaSpanExporter("localhost:9092")))

Each message is one ExportTraceServiceRequest holding the spans of one trace, keyed by the
hex trace id (as the Collector's Kafka exporter does with partition_traces_by_id), so a trace
stays on one partition.

It never blocks or breaks the application: the producer is created on the first export (in the
processor's thread), so an app starts while Kafka is down; spans that cannot be handed over are
kept, up to `max_buffered_spans`, and sent with the next export; past that bound the oldest are
dropped, counted in `dropped_spans`, with one warning per outage. A batch whose hand-over failed
midway is sent again whole: Kafka may then hold a span twice, and ingest keeps one.

It lives in the base package, not in `ingest`, because applications import it: it needs the
OpenTelemetry SDK and kafka-python, nothing of the warehouse.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict
from kafka import KafkaProducer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from spanlake.encoding import CONTENT_TYPE, Encoding

logger = logging.getLogger(__name__)

_ID_FIELDS = {"traceId", "spanId", "parentSpanId"}


def to_otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP JSON: protobuf JSON mapping, except ids are hex and enums are integers."""
    doc = MessageToDict(request, use_integers_for_enums=True)
    return orjson.dumps(_hex_ids(doc))


def _hex_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (base64.b64decode(v).hex() if k in _ID_FIELDS and isinstance(v, str) else _hex_ids(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(x) for x in node]
    return node


def encode(request: ExportTraceServiceRequest, encoding: Encoding) -> bytes:
    return to_otlp_json(request) if encoding == "otlp_json" else request.SerializeToString()


class KafkaSpanExporter(SpanExporter):
    """Writes finished spans to `topic`; never raises into the application."""

    def __init__(
        self,
        bootstrap_servers: str = "localhost:9092",
        topic: str = "otlp_spans",
        *,
        encoding: Encoding = "otlp_proto",
        producer: KafkaProducer | None = None,
        send_timeout: float = 30.0,
        max_buffered_spans: int = 100_000,
        **producer_config: Any,
    ) -> None:
        self.topic = topic
        self.encoding = encoding
        self.send_timeout = send_timeout
        self.max_buffered_spans = max_buffered_spans
        self.dropped_spans = 0  # spans given up on: the buffer was full while Kafka was unreachable
        self._bootstrap_servers = bootstrap_servers
        self._config = {"linger_ms": 5, "max_request_size": 16 * 1024 * 1024, **producer_config}
        self._owns_producer = producer is None
        self._producer = producer
        self._pending: deque[ReadableSpan] = deque()
        self._lock = threading.Lock()
        self._retry_at = 0.0  # after a failed connect, wait before the next attempt
        self._outage = False

    def _connect(self) -> KafkaProducer | None:
        if self._producer is None and time.monotonic() >= self._retry_at:
            try:
                self._producer = KafkaProducer(
                    bootstrap_servers=self._bootstrap_servers.split(","), acks="all", **self._config
                )
            except Exception as exc:
                self._retry_at = time.monotonic() + 5
                self._trouble(f"cannot reach Kafka at {self._bootstrap_servers}: {exc}")
        return self._producer

    def _trouble(self, why: str) -> None:
        if not self._outage:
            self._outage = True
            logger.warning("spanlake: %s; keeping up to %d spans until it is back", why, self.max_buffered_spans)

    def _keep(self, spans: list[ReadableSpan]) -> None:
        """Hold spans for the next export, dropping the oldest past the bound."""
        self._pending.extend(spans)
        over = len(self._pending) - self.max_buffered_spans
        if over > 0:
            for _ in range(over):
                self._pending.popleft()
            if self.dropped_spans == 0 or not self._outage:
                logger.warning("spanlake: Kafka unreachable and %d spans buffered: dropping the oldest "
                               "(KafkaSpanExporter.dropped_spans counts them)", self.max_buffered_spans)  # fmt: skip
            self.dropped_spans += over

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            batch = [*self._pending, *spans]
            self._pending.clear()
            producer = self._connect()
            if producer is None:
                self._keep(batch)
                return SpanExportResult.FAILURE
            by_trace: dict[int, list[ReadableSpan]] = defaultdict(list)
            for span in batch:
                by_trace[span.context.trace_id].append(span)
            try:
                futures = [
                    producer.send(
                        self.topic,
                        key=f"{trace_id:032x}".encode(),
                        value=encode(encode_spans(trace_spans), self.encoding),
                        headers=[("content-type", CONTENT_TYPE[self.encoding])],
                    )
                    for trace_id, trace_spans in by_trace.items()
                ]
                for future in futures:
                    future.get(timeout=self.send_timeout)
            except Exception as exc:  # the SDK contract: report failure, never raise into the app
                self._trouble(f"exporting {len(batch)} spans to Kafka topic {self.topic!r} failed: {exc}")
                self._keep(batch)
                return SpanExportResult.FAILURE
            if self._outage:
                self._outage = False
                logger.warning("spanlake: Kafka is back; the buffered spans were sent")
            return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        if self._pending:
            self.export([])
        if self._producer is None:
            return not self._pending
        try:
            self._producer.flush(timeout=timeout_millis / 1000)
        except Exception:
            logger.exception("spanlake: flushing the Kafka producer failed")
            return False
        return not self._pending

    def shutdown(self) -> None:
        if self._pending:
            self.export([])
        if self._pending:
            logger.warning("spanlake: shutting down with %d spans Kafka never took", len(self._pending))
        if self._owns_producer and self._producer is not None:
            self._producer.close()
