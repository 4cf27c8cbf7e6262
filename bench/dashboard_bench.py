"""Dashboard benchmark: the server time of each page's script run on a benchmark warehouse.

Each page of dashboard/pages.py runs under streamlit.testing.v1.AppTest in this process (the
entrypoint with its sidebar filters, then the page script: what the server does for one page
view). Cold: st.cache_data cleared before the run, so every loader reads the tables (the OS page
cache stays warm). Warm: the same run again, the loaders' results cached. Each page's first run
(imports, AppTest's component scan) is left out. Medians of --runs runs; the table also gives
the harness's floor, a one-line script's rerun, to read the figures against.

Before timing, the jobs' tables the pages read are written if missing, timed and reported: the
cost job (run_costs) and the scorers of examples/scorers.toml (run_scorers). The warehouse is
modified by that: build one for it.

    nice .venv/bin/python bench/build_warehouse.py --traces 1000000 --start-day $(date -u -d '7 days ago' +%F) \\
        --out /work/bench-data/wh-1m
    nice .venv/bin/python bench/dashboard_bench.py --warehouse /work/bench-data/wh-1m    # --pages cost.py --range all

Exits 1 when a page raised or showed an error (never for slowness: read the table).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from spanlake.cli.dashboard import app_path
from spanlake.dashboard.pages import PAGES
from spanlake.jobs.costs import run_costs
from spanlake.jobs.production import run_scorers
from spanlake.query.location import MISSING, open_if_exists

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from dashboard_support import showcase_trace  # noqa: E402  (a test helper: the trace Trace detail opens)

TIMEOUT = 300  # seconds per run: a slow page is a figure, not a failure
TARGET, GOAL = 2.0, 0.5  # seconds of server time per page (issue 10)


def prepare(warehouse: str) -> None:
    """Write the jobs' tables the pages read, when missing, and say how long that took."""
    for table, what, job in (
        ("span_costs", "cost job (run_costs)", lambda: run_costs(warehouse=warehouse)),
        ("assessments", "scorers (examples/scorers.toml)",
         lambda: run_scorers(REPO / "examples" / "scorers.toml", warehouse=warehouse)),
    ):  # fmt: skip
        if open_if_exists(table, warehouse, {})[0] != MISSING:
            print(f"{table}: present, {what} not re-run")
            continue
        began = time.perf_counter()
        job()
        print(f"{what}: {time.perf_counter() - began:.1f} s")


def page_view(script: str, query: dict[str, str]) -> AppTest:
    """The page's AppTest, run once: that first run scans the installed packages for Streamlit
    components (AppTest does so per instance, the server once at start), so it is not timed."""
    at = AppTest.from_file(str(app_path()), default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(str(Path("views") / script)).run()
    return at


def timed_run(at: AppTest) -> tuple[float, list[str]]:
    """One rerun of the page: seconds, and the exceptions and errors it rendered."""
    began = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - began
    problems = [(e.value or "exception").splitlines()[0] for e in at.exception]
    return seconds, problems + [e.value.splitlines()[0] for e in at.error]


def bench_page(script: str, query: dict[str, str], runs: int) -> tuple[list[float], list[float], list[str]]:
    at = page_view(script, query)
    cold, warm, problems = [], [], []
    for _ in range(runs):
        st.cache_data.clear()
        seconds, shown = timed_run(at)
        cold.append(seconds)
        seconds, again = timed_run(at)
        warm.append(seconds)
        problems += shown + again
    return cold, warm, sorted(set(problems))


def floor(runs: int) -> float:
    """The harness's own cost: a one-line script's rerun (the script thread's start and stop)."""
    at = AppTest.from_string("import streamlit as st\nst.title('floor')")
    at.run()
    return statistics.median(timed_run(at)[0] for _ in range(runs))


def verdict(seconds: float) -> str:
    return "goal" if seconds <= GOAL else "ok" if seconds <= TARGET else "SLOW"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True, help="a warehouse from bench/build_warehouse.py")
    parser.add_argument("--runs", "--repeat", type=int, default=5, help="cold and warm runs per page and range (default 5)")
    parser.add_argument("--ranges", "--range", nargs="+", default=["24h", "all"], help="global time ranges "
                        "(default 24h all: the default view and the whole warehouse)")  # fmt: skip
    parser.add_argument("--pages", nargs="+", default=[], help="pages to time, by script or url path "
                        "(cost.py or cost; default: every page)")  # fmt: skip
    args = parser.parse_args()

    warehouse = str(Path(args.warehouse).resolve())
    os.environ["SPANLAKE_WAREHOUSE"] = warehouse  # the dashboard reads its settings from the environment
    print(f"warehouse {warehouse}; {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    prepare(warehouse)
    trace_id = showcase_trace(warehouse)
    chosen = [p for p in PAGES if not args.pages or {p[0], p[3]} & set(args.pages)]

    rows, failed = [], False
    for time_range in args.ranges:
        for script, title, _, path in chosen:
            query = {"range": time_range, **({"trace_id": trace_id} if path == "trace" else {})}
            cold, warm, problems = bench_page(script, query, args.runs)
            failed |= bool(problems)
            rows.append((title, time_range, statistics.median(cold), max(cold), statistics.median(warm), problems))
            print(f"  {title} ({time_range}): cold {statistics.median(cold):.3f} s, warm {statistics.median(warm):.3f} s",
                  file=sys.stderr)  # fmt: skip

    print(f"\nserver time per page view, median of {args.runs} (target {TARGET} s, goal {GOAL} s); "
          f"the harness's floor (a one-line script): {floor(args.runs):.3f} s\n")
    print("| page | range | cold median | cold max | warm median | verdict (cold) | errors |")
    print("|---|---|---|---|---|---|---|")
    for title, time_range, cold_median, cold_max, warm_median, problems in rows:
        print(f"| {title} | {time_range} | {cold_median:.3f} s | {cold_max:.3f} s | {warm_median:.3f} s "
              f"| {verdict(cold_median)} | {'; '.join(problems) or '-'} |")  # fmt: skip
    if failed:
        print("\nsome pages raised or showed an error (the errors column)", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
