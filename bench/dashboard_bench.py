"""Server time of dashboard pages: each page's script run under streamlit.testing.v1.AppTest on a
benchmark warehouse, cold (Streamlit's caches cleared: every loader reads the tables) and warm
(the same run again: the loaders hit their version-keyed caches).

    .venv/bin/python bench/dashboard_bench.py --warehouse /work/bench-data/wh-1m --pages cost.py quality.py

Run it from outside the repo's top-level folders' shadow (cd /tmp). The range defaults to "all":
benchmark warehouses hold past days, and the whole warehouse is the worst case of every page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

from spanlake.cli.dashboard import app_path
from spanlake.dashboard.pages import PAGES


def run_page(page: str, query: dict[str, str]) -> float:
    """Seconds of one page's script run (the entrypoint's first run, on the default page, not counted)."""
    at = AppTest.from_file(str(app_path()), default_timeout=600)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    started = time.perf_counter()
    at.switch_page(str(Path("views") / page)).run()
    seconds = time.perf_counter() - started
    if at.exception:
        raise SystemExit(f"{page}: {at.exception[0].value}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", required=True, help="warehouse to read (SPANLAKE_WAREHOUSE)")
    parser.add_argument("--pages", nargs="+", default=[p[0] for p in PAGES], help="page scripts (default: all)")
    parser.add_argument("--range", default="all", help="global time range (default all)")
    parser.add_argument("--repeat", type=int, default=3, help="cold and warm runs per page (default 3)")
    args = parser.parse_args()
    os.environ["SPANLAKE_WAREHOUSE"] = args.warehouse
    query = {"range": args.range}
    run_page(args.pages[0], query)  # imports and first table opens, outside the figures
    print(f"{'page':<20} {'cold median':>12} {'warm median':>12}   (seconds, {args.repeat} runs each)")
    for page in args.pages:
        cold, warm = [], []
        for _ in range(args.repeat):
            st.cache_data.clear()
            cold.append(run_page(page, query))
            warm.append(run_page(page, query))
        print(f"{page:<20} {statistics.median(cold):>12.3f} {statistics.median(warm):>12.3f}")


if __name__ == "__main__":
    main()
