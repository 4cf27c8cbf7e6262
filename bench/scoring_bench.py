"""Scoring benchmark: the issue-8 speed targets, on a warehouse from build_warehouse.py.

    vectorized built-ins (all twelve) over 1M traces / ~5M spans      < 5 s
    a Python per-trace scorer over inputs/outputs                     >= 20,000 traces/s
    a Python scorer that takes `trace` (spans loaded as Trace objects)  >= 2,000 traces/s

Traces are the first --traces rows of trace_info (one day of the warehouse: request_time
order), scored through `spanlake.jobs.runner.score_traces`, which loads what the scorers
declare from the warehouse; nothing is written. Each figure is the median of --repeat runs.

    .venv/bin/python bench/build_warehouse.py --traces 1000000 --days 1 --out /work/bench-data/wh-1m
    .venv/bin/python bench/scoring_bench.py --warehouse /work/bench-data/wh-1m
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import polars as pl

from spanlake.jobs import builtins as b
from spanlake.jobs.runner import score_traces
from spanlake.jobs.scorer import scorer
from spanlake.tables import scan


@scorer
def mentions_refund(inputs, outputs) -> bool:  # the shape of a typical custom scorer
    return "refund" in str(outputs).lower() or "refund" in str(inputs).lower()


@scorer
def slow_tool_calls(trace) -> int:
    return len([s for s in trace.search_spans(span_type="TOOL") if (s.end_time_ns - s.start_time_ns) > 1e9])


def builtins() -> list:
    return [
        b.LatencyOverThreshold(max_ms=5000), b.TraceFailed(), b.AnySpanFailed(), b.ToolCallFailed(),
        b.RetrievalEmpty(), b.TokenBudgetExceeded(max_tokens=4000), b.ResponseLength(max_length=2000),
        b.RegexMatch(r"(?i)sorry"), b.LacksCitations(), b.PIIDetection(), b.RefusalDetected(), b.InvalidJSON(),
    ]  # fmt: skip


def timed(traces: pl.DataFrame, scorers: list, warehouse: str, repeat: int) -> tuple[float, int]:
    seconds, rows = [], 0
    for _ in range(repeat):
        began = time.perf_counter()
        rows = score_traces(traces, scorers, warehouse=warehouse).height
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds), rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", required=True, help="a warehouse made by bench/build_warehouse.py")
    parser.add_argument("--traces", type=int, default=1_000_000, help="traces for the built-ins (default 1,000,000)")
    parser.add_argument("--python-traces", type=int, default=200_000, help="traces for the inputs/outputs scorer")
    parser.add_argument("--trace-traces", type=int, default=20_000, help="traces for the `trace` scorer")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is reported (default 3)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    ids = scan("trace_info", warehouse=args.warehouse).select("trace_id", "day").head(args.traces).collect()
    spans = scan("span_data", warehouse=args.warehouse).filter(pl.col("day").is_in(ids["day"].unique().implode()))
    print(f"{ids.height:,} traces ({spans.select(pl.len()).collect().item():,} spans on their days)", flush=True)
    out: dict[str, object] = {"machine": f"{platform.machine()}, CPython {platform.python_version()}"}

    s, rows = timed(ids, builtins(), args.warehouse, args.repeat)
    out["builtins"] = {"traces": ids.height, "seconds": round(s, 2), "results": rows}
    print(f"12 vectorized built-ins over {ids.height:,} traces: {s:.2f} s ({rows:,} results; target < 5 s)", flush=True)

    few = ids.head(args.python_traces)
    s, rows = timed(few, [mentions_refund], args.warehouse, args.repeat)
    out["inputs_outputs"] = {"traces": few.height, "seconds": round(s, 2), "traces_per_s": round(few.height / s)}
    print(f"inputs/outputs scorer over {few.height:,} traces: {few.height / s:,.0f} traces/s (target >= 20,000)")

    few = ids.head(args.trace_traces)
    s, rows = timed(few, [slow_tool_calls], args.warehouse, args.repeat)
    out["trace"] = {"traces": few.height, "seconds": round(s, 2), "traces_per_s": round(few.height / s)}
    print(f"`trace` scorer over {few.height:,} traces: {few.height / s:,.0f} traces/s (target >= 2,000)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
