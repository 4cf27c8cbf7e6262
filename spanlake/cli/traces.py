"""`spanlake traces`: search traces and print one trace, from the command line.

Imported at startup, so this module imports only click; Polars and the query layer load
inside the commands.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import TYPE_CHECKING, Any

import click

from spanlake.cli.options import with_settings

if TYPE_CHECKING:
    import polars as pl

    from spanlake.settings import Settings

TABLE_COLUMNS = ("trace_id", "request_time", "state", "duration_ms", "root_span_name", "service_name",
                 "span_count", "total_tokens", "cost_usd")  # fmt: skip

def _jsonable(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _dumps(value: Any, **kw: Any) -> str:
    return json.dumps(value, default=_jsonable, ensure_ascii=False, **kw)


def _csv(frame: pl.DataFrame) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=frame.columns, lineterminator="\n")
    writer.writeheader()
    for row in frame.to_dicts():  # lists and maps become JSON text; CSV has no nesting
        writer.writerow({k: _dumps(v) if isinstance(v, (list, dict)) else _scalar(v) for k, v in row.items()})
    return out.getvalue()


def _scalar(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else value


def _table(frame: pl.DataFrame) -> str:
    import polars as pl

    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=240, fmt_str_lengths=40, float_precision=1,
                   tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):  # fmt: skip
        shown = frame.select(c for c in TABLE_COLUMNS if c in frame.columns)
        if "cost_usd" in shown.columns:  # cents and less: the one-decimal float format would print 0.0
            usd = [None if v is None else f"{v:.6f}" for v in shown["cost_usd"]]
            shown = shown.with_columns(pl.Series("cost_usd", usd, dtype=pl.String))
        return str(shown)


@click.group()
def traces() -> None:
    """Search traces and show one trace as a span tree."""


@traces.command("search")
@click.argument("filter_string", metavar="[FILTER]", required=False)
@click.option("--order-by", "order_by", multiple=True, metavar="KEY",
              help="Sort key like 'timestamp_ms DESC' (repeatable) [default: newest first].")  # fmt: skip
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Traces per page.")
@click.option("--page-token", help="next_page_token printed by the previous page.")
@click.option("--start-time", help="Only traces starting at or after this ISO time (or epoch ms).")
@click.option("--end-time", help="Only traces starting before this ISO time (or epoch ms).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@with_settings("warehouse")
def search(
    settings: Settings, filter_string: str | None, order_by: tuple[str, ...], limit: int, page_token: str | None,
    start_time: str | None, end_time: str | None, fmt: str,
) -> None:  # fmt: skip
    """Find traces matching FILTER (all traces when omitted), newest first.

    FILTER uses MLflow's search_traces syntax plus OR, NOT and parentheses, e.g.
    "trace.status = 'ERROR' AND span.type = 'LLM'", or "trace.cost > 0.01" (USD, from
    `spanlake jobs run costs`; also an --order-by key: 'trace.cost DESC'). Each trace shows
    its cost_usd (empty when unpriced). The next page's token goes to stderr (table, csv) or
    into the JSON output.
    """
    from spanlake.query.search import search_traces

    page = search_traces(
        filter_string, order_by=list(order_by) or None, max_results=limit, page_token=page_token,
        start_time=_time_arg(start_time), end_time=_time_arg(end_time),
        warehouse=settings.warehouse, storage_options=settings.storage_options,
    )  # fmt: skip
    if page.frame.is_empty():
        # A bare table header says nothing; machine formats stay parseable and get the line on stderr.
        click.echo(_no_match(filter_string, start_time, end_time, page_token, settings.warehouse), err=fmt != "table")
        if fmt == "table":
            return
    if fmt == "json":
        click.echo(_dumps({"traces": page.frame.to_dicts(), "next_page_token": page.next_page_token}, indent=2))
        return
    click.echo(_csv(page.frame) if fmt == "csv" else _table(page.frame), nl=fmt != "csv")
    if page.next_page_token:
        click.echo(f"more traces: --page-token {page.next_page_token}", err=True)


def _no_match(
    filter_string: str | None, start_time: str | None, end_time: str | None, page_token: str | None, warehouse: str
) -> str:
    if page_token:
        return "no more traces: that was the last page"
    what = f"no traces match {filter_string!r}" if filter_string else "no traces"
    if start_time or end_time:
        what += f" between {start_time or 'the first trace'} and {end_time or 'now'}"
    return f"{what} in {warehouse}"


def _time_arg(value: str | None) -> str | int | None:
    return int(value) if value is not None and value.lstrip("-").isdigit() else value


@traces.command("get")
@click.argument("trace_id")
@click.option("--format", "fmt", type=click.Choice(["tree", "json"]), default="tree", show_default=True)
@with_settings("warehouse")
def get(settings: Settings, trace_id: str, fmt: str) -> None:
    """Show trace TRACE_ID: its summary, every span as a tree and its assessments (or all fields as JSON)."""
    from spanlake.query.traces import get_trace

    trace = get_trace(trace_id, warehouse=settings.warehouse, storage_options=settings.storage_options)
    click.echo(trace.tree() if fmt == "tree" else _dumps(trace.to_dict(), indent=2))
