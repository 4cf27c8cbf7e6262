"""trace_info MERGE benchmark: the cost of a batch's trace_info step as the day fills up.

No broker: the synthetic workload's spans are encoded into OTLP messages and committed batch
after batch through `DeltaSink` (the code `spanlake ingest` runs), into one UTC day of a fresh
warehouse. Each table step is timed; the report gives the median trace_info step per tenth of
the run, so a cost that grows with the day shows as a rising column.

Two message shapes:
  whole  whole traces per message, in start order (what bench/ingest_bench.py produces);
  split  spans in the order they end, ~100 per message (what an SDK's BatchSpanProcessor
         sends): most traces are split over two or more batches, so the MERGE updates rows.

    .venv/bin/python bench/merge_bench.py --traces 20000 --shape split
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import statistics
import sys
import tempfile
import time
from collections import defaultdict

import polars as pl
from kafka.consumer.fetcher import ConsumerRecord
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spanlake.ingest.sink import DeltaSink
from spanlake.ingest.workload import Workload

DAY = dt.datetime(2026, 3, 2, 0, 5, tzinfo=dt.timezone.utc)


def messages(traces: int, spacing_ms: float, shape: str, per_message: int) -> tuple[list[bytes], int]:
    gc.disable()
    memory = InMemorySpanExporter()
    workload = Workload(memory, seed=42, start=DAY)
    for i in range(traces):
        workload.emit_trace(i, spacing_ms)
    workload.shutdown()
    spans = list(memory.get_finished_spans())
    gc.enable()
    if shape == "whole":
        first: dict[int, int] = {}
        for s in sorted(spans, key=lambda s: s.start_time):
            first.setdefault(s.context.trace_id, s.start_time)
        spans.sort(key=lambda s: (first[s.context.trace_id], s.context.trace_id))
        out, group, last = [], [], None
        for s in spans:
            if len(group) >= per_message and s.context.trace_id != last:
                out.append(encode_spans(group).SerializeToString())
                group = []
            group.append(s)
            last = s.context.trace_id
        out.append(encode_spans(group).SerializeToString())
        return out, len(spans)
    spans.sort(key=lambda s: s.end_time)
    chunks = [spans[i : i + per_message] for i in range(0, len(spans), per_message)]
    return [encode_spans(c).SerializeToString() for c in chunks], len(spans)


def record(offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord("bench", 0, None, offset, 0, 0, None, value, [], None, 0, len(value), 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=int, default=20_000)
    parser.add_argument("--shape", choices=("whole", "split"), default="split")
    parser.add_argument("--spacing-ms", type=float, default=200.0, help="between trace starts (default 200)")
    parser.add_argument("--spans-per-message", type=int, default=100)
    parser.add_argument("--batch-messages", type=int, default=20, help="messages per committed batch (default 20)")
    args = parser.parse_args(argv)

    msgs, spans = messages(args.traces, args.spacing_ms, args.shape, args.spans_per_message)
    print(f"{len(msgs)} messages, {spans} spans, {args.traces} traces, shape {args.shape}", file=sys.stderr)
    steps: dict[str, list[float]] = defaultdict(list)
    original = DeltaSink._step

    def timed(self, name, *rest):  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        try:
            return original(self, name, *rest)
        finally:
            steps[name].append(time.perf_counter() - began)

    DeltaSink._step = timed  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        sink = DeltaSink(f"{tmp}/wh", group="bench", topic="bench")
        sink.load_offsets([0])
        began = time.perf_counter()
        for b in range(0, len(msgs), args.batch_messages):
            batch = [record(b + i, m) for i, m in enumerate(msgs[b : b + args.batch_messages])]
            sink.commit(sink.decode(batch))
        elapsed = time.perf_counter() - began
        info = pl.scan_delta(f"{tmp}/wh/trace_info")
        rows, distinct = info.select(pl.len(), pl.col("trace_id").n_unique()).collect().row(0)
        files = len(sink.tables["trace_info"].file_uris())
    merges = steps["trace_info"]
    tenth = max(1, len(merges) // 10)
    medians = [statistics.median(merges[i : i + tenth]) * 1000 for i in range(0, len(merges), tenth)]
    print(f"batches {len(merges)}, {spans / elapsed:,.0f} spans/s through DeltaSink.commit, "
          f"trace_info rows {rows:,} (distinct ids {distinct:,}), files {files}")  # fmt: skip
    print("trace_info step, median ms per tenth of the run:", " ".join(f"{m:.0f}" for m in medians))
    for name, times in steps.items():
        print(f"  {name:<15} total {sum(times):6.1f} s  median {statistics.median(times) * 1000:6.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
