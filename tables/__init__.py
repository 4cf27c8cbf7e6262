"""The floor every other layer stands on: table specs, Delta helpers and `scan` for analysts.

    import polars as pl
    from spanlake.tables import scan
    scan("trace_info").filter(pl.col("state") == "ERROR").collect()
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

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
    try:
        return pl.scan_delta(uri, version=version, storage_options=dict(storage_options or {}) or None)
    except Exception as exc:  # polars raises several kinds for a missing table
        raise TableError(f"cannot read table {name!r} at {uri}: {exc}") from exc
