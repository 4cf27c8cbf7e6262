"""spanlake: a warehouse for LLM-application traces.

OTLP spans from Kafka land exactly once in Delta tables (`trace_info`, `span_data`) that
Polars, DuckDB or Spark can read. The analyst's entry points are re-exported here.
"""

__version__ = "0.1.0"
