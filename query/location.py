"""Where the read layer finds its tables: the warehouse from arguments or settings, and Delta
tables opened at a version (the DeltaTable object pins that version for Polars' scan).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from spanlake.errors import TableError
from spanlake.tables import spec, table_uri

__all__ = ["MISSING", "MissingTableError", "open_delta", "open_if_exists", "open_table", "warehouse_location"]

MISSING = -1  # the "version" open_if_exists reports for a table that does not exist (yet)


class MissingTableError(TableError):
    """The table does not exist in the warehouse (nothing has written it yet)."""


def warehouse_location(warehouse: str | None, storage_options: Mapping[str, str] | None) -> tuple[str, dict[str, str]]:
    """The warehouse and storage options to use: arguments first, else SPANLAKE_* settings."""
    if warehouse is None:
        from spanlake.settings import Settings

        settings = Settings()
        warehouse = settings.warehouse
        storage_options = storage_options if storage_options is not None else settings.storage_options
    return warehouse, dict(storage_options or {})


def open_delta(
    name: str, warehouse: str, storage_options: Mapping[str, str], version: int | None = None
) -> tuple[DeltaTable, pl.LazyFrame]:
    """(table, lazy scan) of a table: the DeltaTable object pins the version for Polars."""
    uri = table_uri(warehouse, name)
    try:
        table = DeltaTable(uri, version=version, storage_options=dict(storage_options) or None)
    except TableNotFoundError:
        raise MissingTableError(f"table {name!r} does not exist at {uri}") from None
    except DeltaError as exc:
        if version is None:
            raise TableError(f"cannot read table {name!r} at {uri}: {exc}") from exc
        raise TableError(
            f"table {name!r} version {version} (pinned by the page token) is no longer readable; "
            "start the search again without a page token"
        ) from exc
    return table, pl.scan_delta(table)


def open_table(
    name: str, warehouse: str, storage_options: Mapping[str, str], version: int | None = None
) -> tuple[int, pl.LazyFrame]:
    """(version read, lazy scan) of a table: the DeltaTable object pins the version for Polars."""
    table, scan = open_delta(name, warehouse, storage_options, version)
    return table.version(), scan


def open_if_exists(
    name: str, warehouse: str, storage_options: Mapping[str, str], version: int | None = None
) -> tuple[int, pl.LazyFrame]:
    """`open_table`, except that a missing table (or `version` MISSING) reads as empty, with its
    spec's schema, at version MISSING: for tables that jobs create on first use (assessments)."""
    if version != MISSING:
        try:
            return open_table(name, warehouse, storage_options, version)
        except MissingTableError:
            if version is not None:  # it existed at that version once: deleted since, not "not yet"
                raise
    empty = pl.from_arrow(spec(name).schema.empty_table())
    assert isinstance(empty, pl.DataFrame)
    return MISSING, empty.lazy()
