"""LLM judge overhead benchmark: verdicts per second at 64-way concurrency against the local
chat-completions server (tests/judge_server.py) answering instantly, so what is measured is
spanlake's own cost per verdict: rendering the prompt, the HTTP round trip through the pooled
client, parsing the verdict, the budget and the SQLite cache write. Every prompt is new (no
cache hits). The server runs in its own process so it does not share the client's GIL.

    .venv/bin/python bench/judge_bench.py --seconds 10 --concurrency 64
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from spanlake.broker import free_port
from spanlake.jobs.judge_cache import VerdictCache
from spanlake.jobs.judge_client import JudgeClient
from spanlake.jobs.judges import Guidelines

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "judge_server.py"), "--port", str(port)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url = server.stdout.readline().strip() if server.stdout else ""
        with tempfile.TemporaryDirectory() as tmp:
            client = JudgeClient(base_url=url, model="bench-judge", api_key="sk-bench",
                                 concurrency=args.concurrency, cache=VerdictCache(Path(tmp) / "cache.sqlite"))  # fmt: skip
            judge = Guidelines(name="polite", guidelines="The response must be courteous.", client=client)
            done, errors, counter, stop = 0, 0, iter(range(1 << 62)), time.monotonic() + args.seconds
            lock = threading.Lock()

            def worker() -> None:
                nonlocal done, errors
                while time.monotonic() < stop:
                    i = next(counter)
                    result = judge.run(inputs={"question": f"where is order {i}?"}, outputs=f"Order {i} ships soon.")
                    with lock:
                        done += 1
                        errors += result.error is not None

            started = time.monotonic()
            with ThreadPoolExecutor(args.concurrency) as pool:
                for f in [pool.submit(worker) for _ in range(args.concurrency)]:
                    f.result()
            elapsed = time.monotonic() - started
            print(f"{done:,} verdicts in {elapsed:.1f} s at {args.concurrency}-way concurrency: "
                  f"{done / elapsed:,.0f} verdicts/s ({errors} errors, {len(client.cache or [])} kept)")  # fmt: skip
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
