"""Where pages get their data: loaders cached on the Delta versions of the tables they read, and
the notices a page shows instead of a traceback.

    @data.loader("trace_info")
    def requests(trace_info: pl.LazyFrame, filters: Filters) -> pl.DataFrame:
        return trace_info.filter(filters.trace_expr()).select(pl.len()).collect()

A loader's result is kept until one of its tables gets a new version (new data shows on the
next rerun, unchanged data is never re-read). Versions are looked up at most every
VERSION_TTL seconds, since opening a table reads its log. A missing table reads as empty with its
spec's schema (spanlake.query.location.open_if_exists); `missing()` tells the page which.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import polars as pl
import streamlit as st
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from spanlake.errors import SpanlakeError
from spanlake.query.location import MISSING, open_if_exists, warehouse_location
from spanlake.tables import table_uri

VERSION_TTL = 2.0  # seconds: how stale a page may be before it sees a new table version
R = TypeVar("R")


def location() -> tuple[str, dict[str, str]]:
    """The warehouse and storage options, from SPANLAKE_* settings (`spanlake dashboard` sets them)."""
    return warehouse_location(None, None)


@st.cache_data(ttl=VERSION_TTL, show_spinner=False)
def _version(name: str, warehouse: str, _options: dict[str, str]) -> int:
    try:
        return DeltaTable(table_uri(warehouse, name), storage_options=_options or None).version()
    except TableNotFoundError:
        return MISSING


def version(name: str) -> int:
    """The table's current version (MISSING when it does not exist yet)."""
    warehouse, options = location()
    return _version(name, warehouse, options)


def missing(*names: str) -> list[str]:
    """Which of the tables do not exist yet."""
    return [name for name in names if version(name) == MISSING]


@st.cache_data(show_spinner=False, max_entries=512)
def _load(key: str, warehouse: str, versions: tuple[tuple[str, int], ...], args: tuple[Any, ...],
          kwargs: tuple[tuple[str, Any], ...], _func: Callable[..., Any], _options: dict[str, str]) -> Any:  # fmt: skip
    frames = [open_if_exists(name, warehouse, _options, v)[1] for name, v in versions]
    return _func(*frames, *args, **dict(kwargs))


def loader(*tables: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """A cached loader over `tables` (passed in as LazyFrames at their current versions); its
    other arguments (filters, ids) are part of the cache key and must be hashable by Streamlit."""

    def decorate(func: Callable[..., R]) -> Callable[..., R]:
        key = f"{func.__module__}.{func.__qualname__}"

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> R:
            warehouse, options = location()
            versions = tuple((name, _version(name, warehouse, options)) for name in tables)
            result: R = _load(key, warehouse, versions, args, tuple(sorted(kwargs.items())), func, options)
            return result

        return wrapper

    return decorate


@st.cache_data(show_spinner=False, max_entries=256)
def _query(key: str, warehouse: str, versions: tuple[tuple[str, int], ...], args: tuple[Any, ...],
           kwargs: tuple[tuple[str, Any], ...], _func: Callable[..., Any]) -> Any:  # fmt: skip
    return _func(*args, **dict(kwargs))


def query_loader(*tables: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Like `loader`, cached on the versions of `tables`, for a loader that reads through
    spanlake.query's own functions (get_trace, scan_traces open their tables: passing frames in
    would open each table twice). It gets only its own arguments; `location()` gives the warehouse."""

    def decorate(func: Callable[..., R]) -> Callable[..., R]:
        key = f"{func.__module__}.{func.__qualname__}"

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> R:
            warehouse, options = location()
            versions = tuple((name, _version(name, warehouse, options)) for name in tables)
            result: R = _query(key, warehouse, versions, args, tuple(sorted(kwargs.items())), func)
            return result

        return wrapper

    return decorate


def refresh_versions() -> None:
    """After the page itself wrote a table (human feedback): look the versions up again now, so
    the rerun shows the write instead of waiting out VERSION_TTL."""
    _version.clear()


@loader("trace_info")
def filter_choices(trace_info: pl.LazyFrame) -> dict[str, list[str]]:
    """The sidebar's choices: services, environments and models seen in trace_info."""
    frames = pl.collect_all([
        trace_info.select(pl.col("service_name").drop_nulls().unique().sort()),
        trace_info.select(pl.col("environment").drop_nulls().unique().sort()),
        trace_info.select(pl.col("models").explode().drop_nulls().unique().sort()),
    ])  # fmt: skip
    return {key: frame.to_series().to_list() for key, frame in zip(("service", "environment", "model"), frames)}


@contextmanager
def page_errors() -> Iterator[None]:
    """Show a failure to read as one clear message with what to do, never a traceback."""
    try:
        yield
    except SpanlakeError as exc:
        st.error(f"{exc}", icon=":material/error:")
    except (DeltaError, OSError) as exc:
        warehouse, _ = location()
        st.error(f"Cannot read the warehouse at {warehouse}: {str(exc).splitlines()[0]}. "
                 "Check SPANLAKE_WAREHOUSE and SPANLAKE_STORAGE_OPTIONS, then reload.", icon=":material/error:")  # fmt: skip


def no_traces_notice() -> bool:
    """When there are no traces at all, say how to get some and return True (the page stops)."""
    if version("trace_info") != MISSING:
        return False
    warehouse, _ = location()
    st.info(f"No traces in the warehouse at {warehouse} yet. Send spans to Kafka and run `spanlake ingest` "
            "(or `spanlake demo` for sample data), then reload.", icon=":material/inbox:")  # fmt: skip
    return True


def job_never_ran_notice(table: str, command: str) -> bool:
    """When a job's table does not exist yet, say which command writes it and return True."""
    if version(table) != MISSING:
        return False
    st.info(f"The `{table}` table does not exist yet: run `{command}` (or `spanlake jobs run all --every 60`), "
            "then reload.", icon=":material/schedule:")  # fmt: skip
    return True
