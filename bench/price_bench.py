"""Pricing benchmark: `spanlake.jobs.prices.price_spans` over synthetic span_data rows in memory.

The spans name the synthetic workload's models (ingest/workload.py), a few unknown ones and some
null-model spans, spread over 90 days (90 price days per model), with cache reads, cache writes,
reasoning and a few long-context calls past the tiers. Timed: the whole call (distinct keys,
rate resolution through genai-prices, join, cost expressions), once after one untimed warm-up.
Target (issue 9): a full re-price of 50M spans well under 60 s on 2 cores.

    .venv/bin/python bench/price_bench.py --spans 5000000
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import polars as pl

from spanlake.ingest.workload import CHAT_MODELS, EMBED_MODELS
from spanlake.jobs.prices import PriceList, price_spans

MODELS = [(p, m) for p, _, m in CHAT_MODELS] + list(EMBED_MODELS) + [("openai", "gpt-unknown"), (None, None)]


def synthetic_spans(n: int, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(MODELS), n)
    start = np.datetime64("2026-09-01T00:00:00", "us") + rng.integers(0, 90 * 86_400_000_000, n).astype(
        "timedelta64[us]"
    )
    inputs = rng.lognormal(np.log(900), 0.6, n).astype(np.int64) + 1
    inputs[rng.random(n) < 0.002] = 250_000  # long context, past the 128k/200k tiers
    cached = (inputs * rng.uniform(0, 0.9, n)).astype(np.int64) * (rng.random(n) < 0.4)
    created = ((inputs - cached) * rng.uniform(0, 0.5, n)).astype(np.int64) * (rng.random(n) < 0.05)
    outputs = rng.lognormal(np.log(180), 0.6, n).astype(np.int64) + 1
    reasoning = (outputs * rng.uniform(0, 0.8, n)).astype(np.int64) * (rng.random(n) < 0.1)
    return pl.DataFrame({
        "provider": pl.Series([MODELS[i][0] for i in range(len(MODELS))], dtype=pl.String).gather(which),
        "model": pl.Series([MODELS[i][1] for i in range(len(MODELS))], dtype=pl.String).gather(which),
        "start_time": pl.Series(start).dt.replace_time_zone("UTC"),
        "input_tokens": inputs, "output_tokens": outputs, "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": created, "reasoning_output_tokens": reasoning,
        "provided_cost_usd": pl.Series(np.where(rng.random(n) < 0.01, 0.01, np.nan)).fill_nan(None),
    })  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=5_000_000)
    args = parser.parse_args()
    spans = synthetic_spans(args.spans)
    prices = PriceList()
    price_spans(spans.head(10_000), prices)  # warm-up: imports, genai-prices' lookups
    began = time.perf_counter()
    priced = price_spans(spans, prices)
    seconds = time.perf_counter() - began
    sources = priced.group_by("cost_source").len().sort("cost_source", nulls_last=True).rows()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, polars {pl.__version__}")
    print(f"priced {priced.height:,} spans in {seconds:.2f} s: {priced.height / seconds:,.0f} spans/s")
    print(f"cost_source counts: {sources}; total ${priced['cost_usd'].sum():,.2f}")
    print(f"50M spans at this rate: {50_000_000 / (priced.height / seconds):.1f} s")


if __name__ == "__main__":
    main()
