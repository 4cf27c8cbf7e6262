"""The README's dashboard screenshots: docs/img/{overview,traces,trace_detail,cost}.png.

Builds a demo-like warehouse (the demo's synthetic workload over the last hours, written by the
real ingest sink, then scored and costed: tests/dashboard_support.py) or uses --warehouse (for
example ./spanlake-data after `make demo`), serves it with `spanlake dashboard`, and shoots each
page in headless Chromium (Debian's, through Playwright: `make browser`). A page that shows an
exception or an error fails the run instead of landing in the README. Trace detail opens the
completed trace with the most model calls.

    make screenshots                                   # or: .venv/bin/python docs/screenshots.py
    .venv/bin/python docs/screenshots.py --warehouse spanlake-data

Dev tooling (Playwright is a dev dependency), so it lives here, not in the package.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the browser harness and the fixture warehouse live with the tests

from browser_support import launch, open_page, page_url, serve_dashboard, title  # noqa: E402
from dashboard_support import build_warehouse, showcase_trace  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

SHOTS = {"overview": "overview", "traces": "traces", "trace": "trace_detail", "cost": "cost"}  # url path -> image
VIEWPORT = {"width": 1440, "height": 900}


def shoot(warehouse: str, out: Path, work: Path, time_range: str | None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    trace_id = showcase_trace(warehouse)
    written = []
    with serve_dashboard(warehouse, work / "dashboard.log") as url, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            for path, image in SHOTS.items():
                query = {"range": time_range} if time_range else {}
                if path == "trace":
                    query["trace_id"] = trace_id
                shot = out / f"{image}.png"
                open_page(page, page_url(url, path, **query), title(path), shot)
                written.append(shot)
        finally:
            browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", help="shoot this warehouse (default: build a demo-like one in a temp dir)")
    parser.add_argument("--traces", type=int, default=5000, help="traces in the built warehouse (default 5,000, "
                        "as `spanlake demo`), spread over the hour before now")  # fmt: skip
    parser.add_argument("--range", help="the sidebar's time range (default: the dashboard's, 24h)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="where the PNGs go (default docs/img)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spanlake-screenshots-") as tmp:
        work = Path(tmp)
        warehouse = args.warehouse and str(Path(args.warehouse).resolve())
        if not warehouse:
            print(f"building a demo-like warehouse of {args.traces:,} traces ...", file=sys.stderr)
            start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
            warehouse = build_warehouse(work / "warehouse", traces=args.traces, start=start)
        written = shoot(warehouse, args.out, work, args.range)
    print("wrote " + ", ".join(str(p.relative_to(REPO) if p.is_relative_to(REPO) else p) for p in written)
          + ": check them, then commit docs/img")  # fmt: skip


if __name__ == "__main__":
    main()
