"""The floor every other layer stands on: table specs, Delta helpers and `scan` for analysts.

    import polars as pl
    from spanlake.tables import scan
    scan("trace_info").filter(pl.col("state") == "ERROR").collect()
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from spanlake.errors import TableError
from spanlake.tables.delta import table_uri
from spanlake.tables.schemas import TABLES, TableSpec, spec

__all__ = ["TABLES", "TableSpec", "scan", "spec", "table_uri"]


def scan(
    name: str,
    *,
    warehouse: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    version: int | None = None,
) -> pl.LazyFrame:
    """A Polars LazyFrame over a spanlake table (predicate and projection pushdown included).

    `warehouse` defaults to SPANLAKE_WAREHOUSE (./spanlake-data), like every spanlake command.
    """
    if warehouse is None:
        from spanlake.settings import Settings

        settings = Settings()
        warehouse = settings.warehouse
        storage_options = storage_options if storage_options is not None else settings.storage_options
    uri = table_uri(warehouse, name)
    # Opened here, not by Polars: its scan is lazy, and a missing table would only fail at
    # collect() with a long traceback of Polars internals.
    try:
        table = DeltaTable(uri, version=version, storage_options=dict(storage_options or {}) or None)
    except TableNotFoundError:
        raise TableError(
            f"no table {name!r} in warehouse {warehouse} (nothing ingested there yet? run `spanlake ingest`)"
        ) from None
    except DeltaError as exc:
        raise TableError(f"cannot read table {name!r} in warehouse {warehouse}: {exc}") from None
    return pl.scan_delta(table)
