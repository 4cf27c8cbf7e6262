"""The read layer's view of the cost job's `trace_costs` table: each trace's cost in USD, as the
`trace.cost` filter field, the `trace.cost` order key and the `cost_usd` column of search pages.

trace_costs has one row per trace with a counted model-call span, on the trace's own `day`
partition (the date of its request_time, as in trace_info), so it joins on (trace_id, day) under
the same day bounds as the trace_info scan: a day-by-day walk reads one day of costs per day of
traces. A trace without a row (no model call, or not costed yet) and a row whose spans are all
unpriced both read as a null cost: never a silent zero.
"""

from __future__ import annotations

import polars as pl

from spanlake.errors import TableError
from spanlake.query.location import MISSING

__all__ = ["COST_COLUMN", "COST_FIELD", "NoCostsError", "require_costs", "with_trace_cost"]

COST_FIELD = "trace.cost"
COST_COLUMN = "cost_usd"  # trace_costs' column, and the name it has in search pages


class NoCostsError(TableError):
    """A filter or order key reads trace.cost, but the cost job has not written trace_costs yet."""


def require_costs(version: int, warehouse: str) -> None:
    """Refuse to filter or order by trace.cost before the cost job ever ran: every trace would look
    unpriced, and `trace.cost IS NULL` would quietly match them all."""
    if version == MISSING:
        raise NoCostsError(
            f"{COST_FIELD} reads the trace_costs table, which {warehouse} does not have yet; "
            "run `spanlake jobs run costs` first"
        )


def with_trace_cost(traces: pl.LazyFrame, costs: pl.LazyFrame, day_bounds: list[pl.Expr]) -> pl.LazyFrame:
    """`traces` (trace_info rows) plus COST_COLUMN, the trace's cost or null; `day_bounds` are the
    partition predicates the traces were read with, so the costs scan prunes the same days."""
    mine = costs.filter(*day_bounds) if day_bounds else costs
    return traces.join(
        mine.select("trace_id", "day", COST_COLUMN), on=["trace_id", "day"], how="left", maintain_order="left"
    )
