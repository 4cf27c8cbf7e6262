"""Numbers as people read them: durations in ms/s/min, dollars, counts in k/M, percentages."""

from __future__ import annotations

import math
from collections.abc import Callable

import polars as pl


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def duration(ms: float | None) -> str:
    """123 ms, 1.23 s, 2.5 min, 1.2 h."""
    if _missing(ms):
        return "–"
    assert ms is not None
    if abs(ms) < 1000:
        return f"{ms:.0f} ms"
    if abs(ms) < 60_000:
        return f"{ms / 1000:.2f} s"
    if abs(ms) < 3_600_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


def usd(value: float | None) -> str:
    """$1,234, $12.35, $0.0123: small costs keep 3 significant digits (per-request cost is cents)."""
    if _missing(value):
        return "–"
    assert value is not None
    if value == 0:
        return "$0"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    return f"${value:.{max(2, 2 - math.floor(math.log10(abs(value))))}f}"


def count(value: float | None) -> str:
    """950, 12.3k, 4.56M, 1.2B."""
    if _missing(value):
        return "–"
    assert value is not None
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:,.0f}"


def percent(share: float | None) -> str:
    """0.0123 -> 1.23%."""
    if _missing(share):
        return "–"
    assert share is not None
    return f"{share * 100:.3g}%"


def change(now: float | None, before: float | None) -> str | None:
    """The change against the previous period, for st.metric's delta: +12%, or None when unknown."""
    if _missing(now) or _missing(before) or before == 0:
        return None
    assert now is not None and before is not None
    return f"{(now - before) / abs(before) * 100:+.0f}%"


def column(name: str, fmt: Callable[[float | None], str]) -> pl.Expr:
    """A column of numbers as text in one of these units, for tables: nulls read as fmt(None) ("–")."""
    return pl.col(name).map_elements(fmt, return_dtype=pl.String, skip_nulls=True).fill_null(fmt(None))
