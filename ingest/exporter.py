"""KafkaSpanExporter: an OpenTelemetry SDK SpanExporter that writes OTLP to a Kafka topic.

Use it under the SDK's BatchSpanProcessor so exporting stays off the request path:

    provider.add_span_processor(BatchSpanProcessor(KafkaSpanExporter("localhost:9092")))

Each message is one ExportTraceServiceRequest holding the spans of one trace, keyed by the
hex trace id (as the Collector's Kafka exporter does with partition_traces_by_id), so a trace
stays on one partition.
"""

from __future__ import annotations

import base64
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
from google.protobuf.json_format import MessageToDict
from kafka import KafkaProducer
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from spanlake.ingest.otlp import Encoding

logger = logging.getLogger(__name__)

CONTENT_TYPE = {"otlp_proto": b"application/x-protobuf", "otlp_json": b"application/json"}
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
        **producer_config: Any,
    ) -> None:
        self.topic = topic
        self.encoding = encoding
        self.send_timeout = send_timeout
        self._owns_producer = producer is None
        self._producer = producer or KafkaProducer(
            bootstrap_servers=bootstrap_servers.split(","),
            acks="all",
            linger_ms=producer_config.pop("linger_ms", 5),
            max_request_size=producer_config.pop("max_request_size", 16 * 1024 * 1024),
            **producer_config,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        by_trace: dict[int, list[ReadableSpan]] = defaultdict(list)
        for span in spans:
            by_trace[span.context.trace_id].append(span)
        try:
            futures = [
                self._producer.send(
                    self.topic,
                    key=f"{trace_id:032x}".encode(),
                    value=encode(encode_spans(trace_spans), self.encoding),
                    headers=[("content-type", CONTENT_TYPE[self.encoding])],
                )
                for trace_id, trace_spans in by_trace.items()
            ]
            for future in futures:
                future.get(timeout=self.send_timeout)
        except Exception:  # the SDK contract: report failure, never raise into the app
            logger.exception("spanlake: exporting %d spans to Kafka topic %r failed", len(spans), self.topic)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        try:
            self._producer.flush(timeout=timeout_millis / 1000)
        except Exception:
            logger.exception("spanlake: flushing the Kafka producer failed")
            return False
        return True

    def shutdown(self) -> None:
        if self._owns_producer:
            self._producer.close()
