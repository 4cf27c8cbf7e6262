"""Deterministic sampling: whether a trace is in a scorer's sample depends on its trace id
alone (the first 8 bytes of sha256(trace_id) as a fraction of 2**64, below the rate), so a
re-run, a second job process or a backfill picks the same traces, on any machine and Python.
Every scorer uses the same fraction: a 10% scorer's traces are within a 50% scorer's.
"""

from __future__ import annotations

import hashlib

import polars as pl

_SCALE = float(2**64)


def sample_fraction(trace_id: str) -> float:
    """Where a trace falls in [0, 1)."""
    return int.from_bytes(hashlib.sha256(trace_id.encode()).digest()[:8], "big") / _SCALE


def in_sample(trace_ids: pl.Series, rate: float) -> pl.Series:
    """A boolean Series: which of `trace_ids` a scorer sampling at `rate` takes."""
    if rate >= 1:
        return pl.Series(trace_ids.name, [True] * trace_ids.len(), pl.Boolean)
    return pl.Series(trace_ids.name, [sample_fraction(t) < rate for t in trace_ids], pl.Boolean)
