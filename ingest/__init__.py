"""spanlake.ingest: OTLP spans from Kafka into the Delta tables, and the producer side
(`KafkaSpanExporter`, the synthetic workload). Heavy imports stay lazy."""

from __future__ import annotations

from typing import Any

__all__ = ["KafkaSpanExporter", "SpanIngestor"]


def __getattr__(name: str) -> Any:
    if name == "KafkaSpanExporter":
        from spanlake.ingest.exporter import KafkaSpanExporter

        return KafkaSpanExporter
    if name == "SpanIngestor":
        from spanlake.ingest.service import SpanIngestor

        return SpanIngestor
    raise AttributeError(name)
