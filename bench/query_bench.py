"""Query benchmark: search_traces / get_trace latency on a warehouse from build_warehouse.py.

Every query runs --repeat times in one process (after one untimed first call, reported on its
own as `first`: it pays imports and cold caches); the median and p90 wall times and the rows
returned are reported against the targets of the "fast on tens of millions of traces" issue:

    a  selective search: one service, one hour, errors only             < 300 ms
    b  metadata filter (mlflow.trace.user) over one day                 < 1 s
    c  span filter (span.type = TOOL AND span.status = ERROR), one day  < 2 s
    d  get_trace of a 50-span trace                                     < 200 ms
    e  first page of an unfiltered search, newest first                 < 300 ms
    f  (extra, no target) the second page of e, through its page token
    g  (extra, no target) trace.cost > 0.01 over one day, newest first  } need trace_costs:
    h  (extra, no target) one day ordered by trace.cost DESC            } run the cost job first

The day used by b and c (and the hour of a, 14:00-15:00 UTC) is the middle full day of the
data; d's trace is a 50-span trace of that day. Pages hold --max-results rows (default 100).

    .venv/bin/python bench/query_bench.py --warehouse /work/bench-data/wh-10m --json /tmp/q.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import DeltaTable

from spanlake.query import get_trace, search_traces

UTC = dt.timezone.utc


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kb / 1024**2:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "ram": mem, "python": platform.python_version(),
        "polars": pl.__version__, "deltalake": __import__("deltalake").__version__,
    }  # fmt: skip


def data_facts(warehouse: str) -> dict[str, Any]:
    """Rows, bytes and files per table, from the Delta log (no data file is read)."""
    facts: dict[str, Any] = {}
    for name in ("trace_info", "span_data"):
        table = DeltaTable(f"{warehouse}/{name}")
        adds = pl.DataFrame(table.get_add_actions(flatten=True))
        facts[name] = {
            "version": table.version(), "files": adds.height, "rows": int(adds["num_records"].sum()),
            "bytes": int(adds["size_bytes"].sum()),
        }  # fmt: skip
        if name == "trace_info":
            facts["days"] = sorted({str(d) for d in adds["partition.day"].to_list()})
    return facts


def pick_day(days: list[str]) -> dt.date:
    """The middle day of the data: a full day, with data on both sides."""
    return dt.date.fromisoformat(days[(len(days) - 1) // 2])


def pick_trace(warehouse: str, day: dt.date, spans: int = 50) -> str:
    found = (
        pl.scan_delta(f"{warehouse}/trace_info")
        .filter(pl.col("day") == day, pl.col("span_count") == spans)
        .select("trace_id")
        .head(1)
        .collect()
    )
    if found.is_empty():
        raise SystemExit(f"no {spans}-span trace on {day}: build the warehouse with bench/build_warehouse.py")
    return str(found["trace_id"][0])


def run(fn: Callable[[], int], repeat: int) -> dict[str, Any]:
    began = time.perf_counter()
    rows = fn()
    first = time.perf_counter() - began
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        rows = fn()
        times.append(time.perf_counter() - began)
    times.sort()
    p90 = times[min(len(times) - 1, max(0, round(0.9 * len(times) + 0.5) - 1))]
    return {
        "rows": rows, "first_ms": round(first * 1000, 1), "median_ms": round(statistics.median(times) * 1000, 1),
        "p90_ms": round(p90 * 1000, 1), "min_ms": round(times[0] * 1000, 1),
        "all_ms": [round(t * 1000, 1) for t in times],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", required=True, help="warehouse directory (build_warehouse.py --out)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per query (default 7)")
    parser.add_argument("--max-results", type=int, default=100, help="page size of the searches (default 100)")
    parser.add_argument("--only", default="abcdef", help="queries to run, e.g. 'ad' (default abcdef; g and h need trace_costs)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    wh = str(Path(args.warehouse).resolve())
    facts = data_facts(wh)
    day = pick_day(facts["days"])
    day_start = dt.datetime.combine(day, dt.time(), UTC)
    day_end = day_start + dt.timedelta(days=1)
    hour_start = day_start + dt.timedelta(hours=14)
    trace_id = pick_trace(wh, day) if "d" in args.only else ""
    n = args.max_results
    page_one: dict[str, Any] = {}

    def search(**kw: Any) -> Callable[[], int]:
        return lambda: search_traces(max_results=n, warehouse=wh, **kw).height

    def second_page() -> int:
        if "token" not in page_one:
            page_one["token"] = search_traces(max_results=n, warehouse=wh).next_page_token
        return search_traces(max_results=n, page_token=page_one["token"], warehouse=wh).height

    queries = [
        ("a", "selective: service_name = 'support-bot' AND status = 'ERROR', one hour", 300, search(
            filter_string="service_name = 'support-bot' AND status = 'ERROR'",
            start_time=hour_start, end_time=hour_start + dt.timedelta(hours=1))),
        ("b", "metadata.`mlflow.trace.user` = 'user-0042', one day", 1000, search(
            filter_string="metadata.`mlflow.trace.user` = 'user-0042'", start_time=day_start, end_time=day_end)),
        ("c", "span.type = 'TOOL' AND span.status = 'ERROR', one day", 2000, search(
            filter_string="span.type = 'TOOL' AND span.status = 'ERROR'", start_time=day_start, end_time=day_end)),
        ("d", f"get_trace of a 50-span trace ({trace_id})", 200,
            lambda: len(get_trace(trace_id, warehouse=wh).spans)),
        ("e", "first page, no filter, newest first", 300, search()),
        ("f", "second page of e (page token)", None, second_page),
        ("g", "trace.cost > 0.01, one day", None, search(
            filter_string="trace.cost > 0.01", start_time=day_start, end_time=day_end)),
        ("h", "order_by trace.cost DESC, one day", None, search(
            order_by=["trace.cost DESC"], start_time=day_start, end_time=day_end)),
    ]  # fmt: skip
    print(
        f"warehouse {wh}: trace_info {facts['trace_info']['rows']:,} rows in {facts['trace_info']['files']} files "
        f"({facts['trace_info']['bytes'] / 1e9:.2f} GB), span_data {facts['span_data']['rows']:,} rows in "
        f"{facts['span_data']['files']} files ({facts['span_data']['bytes'] / 1e9:.2f} GB); day {day}; "
        f"{args.repeat} runs per query, page size {n}",
        flush=True,
    )
    results = []
    header = f"{'':2} {'query':64} {'rows':>5} {'first':>8} {'median':>8} {'p90':>8} {'target':>8}"
    print(header)
    for key, label, target, fn in queries:
        if key not in args.only:
            continue
        r = run(fn, args.repeat)
        r.update(query=key, label=label, target_ms=target, ok=None if target is None else r["median_ms"] < target)
        results.append(r)
        mark = "" if target is None else ("ok" if r["ok"] else "MISS")
        print(
            f"{key:2} {label[:64]:64} {r['rows']:>5} {r['first_ms']:>6.0f}ms {r['median_ms']:>6.0f}ms "
            f"{r['p90_ms']:>6.0f}ms {'-' if target is None else f'{target}ms':>8} {mark}",
            flush=True,
        )
    if args.json:
        out = {"warehouse": wh, "day": str(day), "trace_id": trace_id, "repeat": args.repeat, "page_size": n,
               "machine": machine(), "data": facts, "results": results,
               "when": dt.datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(r["ok"] is not False for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
