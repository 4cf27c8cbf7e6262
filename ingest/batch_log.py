"""The `ingest_batches` row for one committed micro-batch: what the dashboard's ingest
health view reads (throughput, dead letters, lag, commit latency)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

import pyarrow as pa

from spanlake.tables.schemas import INGEST_BATCHES

if TYPE_CHECKING:
    from spanlake.ingest.sink import BatchResult, Decoded


def batch_log_row(
    group: str, topic: str, decoded: list[Decoded], result: BatchResult, lag: int | None, seconds: float
) -> pa.Table:
    ranges: dict[int, list[int]] = {}
    for r in (d.record for d in decoded):
        lo_hi = ranges.setdefault(r.partition, [r.offset, r.offset])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], r.offset), max(lo_hi[1], r.offset)
    now = dt.datetime.now(dt.timezone.utc)
    row = {
        "batch_id": uuid.uuid4().hex,
        "committed_at": now,
        "group": group,
        "topic": topic,
        "offsets": [{"partition": p, "first_offset": lo, "last_offset": hi} for p, (lo, hi) in sorted(ranges.items())],
        "messages": result.messages,
        "spans": result.spans,
        "duplicate_spans": result.duplicates,
        "bytes": sum(len(d.record.value or b"") for d in decoded),
        "dead_letters": result.dead_letters,
        "consumer_lag": lag,
        "duration_ms": seconds * 1000.0,
        "day": now.date(),
    }
    return pa.Table.from_pylist([row], schema=INGEST_BATCHES.schema)
