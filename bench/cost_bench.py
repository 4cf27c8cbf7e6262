"""Cost job benchmark: `spanlake.jobs.costs.run_costs` over a warehouse built by build_warehouse.py.

Timed: a full rebuild (the cost tables dropped first, so the first run prices every span), then
an incremental run after --new-spans new spans: copies of the newest spans (new trace and span
ids, shifted one hour later) appended to span_data, and their traces' rows to trace_info, each as
one commit, the way an ingest batch lands. A final re-run must write nothing. The warehouse is
modified (cost tables, the appended spans): build a copy for it.

    .venv/bin/python bench/build_warehouse.py --traces 1000000 --out /work/bench-data/wh-1m-costs
    .venv/bin/python bench/cost_bench.py --warehouse /work/bench-data/wh-1m-costs
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import time

import polars as pl
from deltalake import write_deltalake

from spanlake.jobs.costs import TARGETS, run_costs
from spanlake.tables import scan
from spanlake.tables.schemas import SPAN_DATA, TRACE_INFO


def append_new_spans(warehouse: str, n: int) -> None:
    """n copies of the newest spans, one hour later, with new ids, and their traces' rows."""
    days = scan("span_data", warehouse=warehouse).select(pl.col("day").unique().sort().tail(2)).collect()["day"]
    newest = scan("span_data", warehouse=warehouse).filter(pl.col("day").is_in(days.implode()))
    spans = newest.sort("start_time").tail(n).collect()
    hour = dt.timedelta(hours=1)
    fresh = pl.col("trace_id").str.slice(0, 30) + pl.lit("ff")
    spans = spans.with_columns(
        trace_id=fresh, span_id=pl.col("span_id").str.slice(0, 14) + pl.lit("ff"),
        parent_span_id=pl.col("parent_span_id").str.slice(0, 14) + pl.lit("ff"),
        start_time=pl.col("start_time") + hour, end_time=pl.col("end_time") + hour,
    ).with_columns(day=pl.col("start_time").dt.date())  # fmt: skip
    traces = (
        scan("trace_info", warehouse=warehouse)
        .join(spans.lazy().select(trace_id=pl.col("trace_id").str.slice(0, 30)).unique(),
              left_on=pl.col("trace_id").str.slice(0, 30), right_on="trace_id", how="semi")
        .collect()
        .with_columns(trace_id=fresh, request_time=pl.col("request_time") + hour, end_time=pl.col("end_time") + hour)
        .with_columns(day=pl.col("request_time").dt.date())
    )  # fmt: skip
    for spec, frame in ((SPAN_DATA, spans), (TRACE_INFO, traces)):
        write_deltalake(f"{warehouse}/{spec.name}", frame.select(spec.column_names).to_arrow().cast(spec.schema),
                        mode="append", partition_by=["day"])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--new-spans", type=int, default=100_000)
    args = parser.parse_args()
    for spec in TARGETS:
        shutil.rmtree(f"{args.warehouse}/{spec.name}", ignore_errors=True)
    spans = scan("span_data", warehouse=args.warehouse).select(pl.len()).collect().item()
    print(f"warehouse {args.warehouse}: {spans:,} spans; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    start = time.perf_counter()
    full = run_costs(warehouse=args.warehouse)
    print(f"full rebuild: {time.perf_counter() - start:.1f} s ({full.spans_read:,} model-call spans priced, "
          f"{full.rows_written:,} rows written)")  # fmt: skip
    append_new_spans(args.warehouse, args.new_spans)
    start = time.perf_counter()
    inc = run_costs(warehouse=args.warehouse)
    print(f"incremental after {args.new_spans:,} new spans: {time.perf_counter() - start:.2f} s "
          f"({inc.spans_read:,} spans read, {inc.rows_written:,} rows written, {inc.windows_recomputed} windows)")  # fmt: skip
    start = time.perf_counter()
    again = run_costs(warehouse=args.warehouse)
    print(f"re-run: {time.perf_counter() - start:.2f} s, {again.rows_written} rows written")


if __name__ == "__main__":
    main()
