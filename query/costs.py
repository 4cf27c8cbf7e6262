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

__all__ = ["COST_COLUMN", "COST_FIELD", "NoCostsError", "require_costs", "with_page_costs", "with_trace_cost"]

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


def with_page_costs(page: pl.DataFrame, costs: pl.LazyFrame, version: int) -> pl.DataFrame:
    """A page of trace_info rows plus COST_COLUMN. No table (the cost job never ran) or no rows: a
    null column, without a join (which costs ~13 ms even when empty)."""
    if version == MISSING or page.is_empty():
        return page.with_columns(pl.lit(None, dtype=pl.Float64).alias(COST_COLUMN))
    return with_trace_cost(page.lazy(), costs, _page_bounds(page)).collect()


def _page_bounds(page: pl.DataFrame) -> list[pl.Expr]:
    """Predicates that narrow the trace_costs read to a page's rows. is_in, not the query layer's
    trace_id_in: trace_costs is not sorted by trace_id, so its ORs would be tried on every row of
    the day (~100 ms at 100k traces a day, against ~9 ms). The time bounds hold for a row the cost
    job wrote before the trace's row last changed too: its request_time was the earliest span start
    seen then, so not before today's request_time (which only moves earlier) nor after the trace's
    end_time. Where trace_costs is ordered by request_time, row-group statistics skip the rest."""
    last_end = page["end_time"].max()
    return [
        pl.col("day").is_between(page["day"].min(), page["day"].max()),
        pl.col("request_time") >= page["request_time"].min(),
        *([pl.col("request_time") <= last_end] if last_end is not None else []),
        pl.col("trace_id").is_in(page["trace_id"].implode()),
    ]
