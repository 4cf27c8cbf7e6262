"""Server time of dashboard pages: each page's script run under streamlit.testing.v1.AppTest
against a benchmark warehouse (bench/build_warehouse.py), cold (first run: tables read) and
warm (a rerun: loaders cached on the tables' versions). Medians of --repeat fresh app sessions;
the cache is cleared before each cold run.

    .venv/bin/python bench/dashboard_pages_bench.py --warehouse /work/bench-data/wh-1m \
        --pages overview.py traces.py sessions.py --query range=all
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


def run_page(page: str, query: dict[str, str]) -> tuple[float, float]:
    at = AppTest.from_file(str(app_path()), default_timeout=600)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    at.switch_page(str(Path("views") / page))
    st.cache_data.clear()  # the entrypoint's first run rendered the default page: start cold
    started = time.perf_counter()
    at.run()
    cold = time.perf_counter() - started
    if at.exception:
        raise SystemExit(f"{page}: {at.exception[0].value}")
    started = time.perf_counter()
    at.run()
    return cold, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True, help="the benchmark warehouse")
    parser.add_argument("--pages", nargs="+", default=["overview.py", "traces.py", "sessions.py"])
    parser.add_argument("--query", nargs="*", default=["range=all"], help="URL parameters, key=value")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["SPANLAKE_WAREHOUSE"] = args.warehouse
    query = dict(item.split("=", 1) for item in args.query)
    for page in args.pages:
        colds, warms = [], []
        for _ in range(args.repeat):
            cold, warm = run_page(page, query)
            colds.append(cold)
            warms.append(warm)
        print(
            f"{page:16} cold median {statistics.median(colds):6.2f} s   warm median {statistics.median(warms):6.3f} s"
            f"   (cold runs {', '.join(f'{c:.2f}' for c in colds)})"
        )


if __name__ == "__main__":
    main()
