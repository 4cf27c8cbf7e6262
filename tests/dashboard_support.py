"""A fixture warehouse for the dashboard tests, written by the real code: the synthetic workload's
spans encoded as the Kafka exporter encodes them and committed by ingest's DeltaSink, then the
scorers of examples/scorers.toml and the cost job run over them, and one human feedback row."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from pathlib import Path

from kafka.consumer.fetcher import ConsumerRecord
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from spanlake.ingest.sink import DeltaSink
from spanlake.ingest.workload import Workload

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class _Collect(SpanExporter):
    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.lock:
            self.requests.append(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS


def build_warehouse(warehouse: Path, *, traces: int = 400, start: dt.datetime | None = None, jobs: bool = True) -> str:
    """Ingest `traces` workload traces (spread over the hour after `start`, default two hours
    ago) into `warehouse`, then (unless not `jobs`) score and cost them. Returns the warehouse path."""
    from spanlake.jobs.costs import run_costs
    from spanlake.jobs.production import run_scorers

    collected = _Collect()
    start = start or dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    Workload(collected, seed=7, start=start).run(traces)
    sink = DeltaSink(str(warehouse), group="dashboard-test", topic="otlp_spans")
    sink.load_offsets([0])
    records = [ConsumerRecord("otlp_spans", 0, -1, offset, 0, 0, None, value, [], None, 0, len(value), 0)
               for offset, value in enumerate(collected.requests)]  # fmt: skip
    for i in range(0, len(records), 200):  # several ingest batches, as a live ingest commits them
        sink.commit(sink.decode(records[i : i + 200]))
    if not jobs:
        return str(warehouse)
    run_scorers(EXAMPLES / "scorers.toml", warehouse=str(warehouse))
    run_costs(warehouse=str(warehouse))
    return str(warehouse)


def showcase_trace(warehouse: str) -> str:
    """A completed trace with the most model calls (then tokens): the one to open in Trace detail
    (the browser test, the README screenshots, the dashboard benchmark)."""
    import polars as pl

    from spanlake.tables import scan

    return (
        scan("trace_info", warehouse=warehouse)
        .filter(pl.col("state") == "OK")
        .sort("llm_call_count", "total_tokens", "trace_id", descending=[True, True, False])
        .select("trace_id")
        .head(1)
        .collect()
        .item()
    )
