"""spanlake.ingest: OTLP spans from Kafka into the Delta tables, the OTLP/HTTP gateway, and the
synthetic workload (the app-side exporter is `spanlake.exporter`). Heavy imports stay lazy."""

from __future__ import annotations

from typing import Any

__all__ = ["SpanIngestor"]


def __getattr__(name: str) -> Any:
    if name == "SpanIngestor":
        from spanlake.ingest.service import SpanIngestor

        return SpanIngestor
    raise AttributeError(name)
