"""Monitors benchmark: `spanlake.jobs.monitors.run_monitors` with 20 rules (mixed metrics, windows 1h
and 1d, some `by`) over a warehouse built by build_warehouse.py (plus, when present, its cost tables).

The warehouse is not modified: each run evaluates in a scratch warehouse whose tables are symlinks
to the bench warehouse's, with its own alerts and job_runs. Timed, 5 times each (medians quoted):
`first`, a fresh alerts table (every breach is a transition: the MERGE commit and its lease), and
`steady`, a re-run at the same time (states hold: nothing written). `now` is the newest
request_time in trace_info, so the windows hold the warehouse's last hour and day.

    .venv/bin/python bench/monitors_bench.py --warehouse /work/bench-data/wh-10m
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

from spanlake.jobs.monitor_metrics import observe
from spanlake.jobs.monitor_rules import METRICS, MonitorRule, window_seconds
from spanlake.jobs.monitors import run_monitors
from spanlake.tables import TABLES, scan

OWN = ("alerts", "job_runs")  # what a monitors run writes: never the bench warehouse's


def rule(name: str, metric: str, window: str, threshold: float, **kw: object) -> MonitorRule:
    seconds = window_seconds(window)
    assert seconds is not None
    return MonitorRule(name, metric, window, seconds, threshold, METRICS[metric].comparison, **kw)  # type: ignore[arg-type]


RULES = [
    rule("errors-1h", "error_rate", "1h", 0.01),
    rule("errors-by-service-1h", "error_rate", "1h", 0.01, by="service"),
    rule("errors-by-env-1d", "error_rate", "1d", 0.01, by="environment"),
    rule("errors-by-user-1d", "error_rate", "1d", 0.05, by="user_id", min_count=20),
    rule("p50-1h", "latency_p50_ms", "1h", 1000),
    rule("p95-by-service-1h", "latency_p95_ms", "1h", 5000, by="service"),
    rule("p99-1d", "latency_p99_ms", "1d", 10000),
    rule("p95-by-model-1d", "latency_p95_ms", "1d", 5000, by="model"),
    rule("p95-support-1h", "latency_p95_ms", "1h", 5000, filter="service_name = 'support-bot'"),
    rule("errors-prod-1d", "error_rate", "1d", 0.02, filter="environment = 'production'"),
    rule("spend-per-user-1d", "cost_usd", "1d", 1.0, by="user_id"),
    rule("spend-1h", "cost_usd", "1h", 10.0),
    rule("spend-by-service-1d", "cost_usd", "1d", 100.0, by="service"),
    rule("spend-by-model-1h", "cost_usd", "1h", 5.0, by="model"),
    rule("judge-spend-1d", "judge_spend_usd", "1d", 1.0),
    rule("concise-1h", "scorer_pass_rate", "1h", 0.9, scorer="concise_answer"),
    rule("failed-1d", "scorer_pass_rate", "1d", 0.9, scorer="trace_failed"),
    rule("freshness-1h", "ingest_freshness_seconds", "1h", 600),
    rule("dead-letters-1h", "dead_letter_rate", "1h", 0.01),
    rule("dead-letters-1d", "dead_letter_rate", "1d", 0.01),
]


def scratch(warehouse: Path) -> Path:
    """A warehouse of symlinks to `warehouse`'s tables, less those a monitors run writes."""
    out = Path(tempfile.mkdtemp(prefix="monitors-bench-"))
    for name in TABLES:
        if name not in OWN and (warehouse / name).exists():
            os.symlink((warehouse / name).resolve(), out / name)
    return out


def newest_request_time(warehouse: str) -> dt.datetime:
    days = DeltaTable(f"{warehouse}/trace_info").get_add_actions(flatten=True).column("partition.day").to_pylist()
    last = max(days)
    rows = scan("trace_info", warehouse=warehouse).filter(pl.col("day") == pl.lit(last))
    return rows.select(pl.col("request_time").max()).collect().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True, type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    source = args.warehouse.resolve()
    rules = RULES
    if not (source / "cost_rollups").exists():
        rules = [r for r in RULES if r.source != "cost_rollups"]
        print(f"no cost_rollups in {source}: the {len(RULES) - len(rules)} cost rules are left out")
    now = newest_request_time(str(source)) + dt.timedelta(seconds=1)
    print(f"{len(rules)} rules at now={now.isoformat()} over {source}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores")  # fmt: skip
    times: dict[str, list[float]] = {"first": [], "steady": [], "observe": []}
    for _ in range(args.repeat):
        wh = scratch(source)
        try:
            for kind in ("first", "steady"):
                began = time.perf_counter()
                run = run_monitors(rules, warehouse=str(wh), now=now)
                times[kind].append(time.perf_counter() - began)
                if kind == "first":
                    print(f"  first: {times['first'][-1]:.2f}s, {run.scopes} scopes, {len(run.transitions)} "
                          f"transitions, {run.rows_read:,} rows read")  # fmt: skip
            began = time.perf_counter()
            observe(rules, now, str(wh), None)
            times["observe"].append(time.perf_counter() - began)
        finally:
            shutil.rmtree(wh)
    for kind, values in times.items():
        print(f"{kind}: median {statistics.median(values):.2f}s (runs: {', '.join(f'{v:.2f}' for v in values)})")
    for source_name in sorted({r.source for r in rules}):
        mine = [r for r in rules if r.source == source_name]
        wh = scratch(source)
        try:
            spent = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                observe(mine, now, str(wh), None)
                spent.append(time.perf_counter() - began)
        finally:
            shutil.rmtree(wh)
        print(f"  {source_name}: {len(mine)} rules, observe median {statistics.median(spent):.2f}s")


if __name__ == "__main__":
    main()
