"""The `job_runs` table: one row per job run, saying what it did (rows read and written, where
the next run starts, and why it failed when it did)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from deltalake import write_deltalake

from spanlake.errors import SpanlakeError
from spanlake.tables.delta import NO_CHECKPOINT, check_warehouse, open_or_create, table_uri, writer_properties
from spanlake.tables.schemas import JOB_RUNS


def one_line(exc: Exception) -> str:
    """An error as job_runs.error records it: one line, the type named when it is not one of ours."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, SpanlakeError) else f"{type(exc).__name__}: {text}"


def new_run_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class JobRun:
    """A run as it goes; `record` writes its row."""

    job: str
    run_id: str = field(default_factory=new_run_id)
    started_at: dt.datetime = field(default_factory=utcnow)
    rows_read: int = 0
    rows_written: int = 0
    watermark: dict[str, Any] = field(default_factory=dict)

    def record(
        self, *, warehouse: str, storage_options: Mapping[str, str] | None = None, error: str | None = None
    ) -> None:
        check_warehouse(warehouse)
        row = {
            "run_id": self.run_id, "job": self.job, "started_at": self.started_at, "ended_at": utcnow(),
            "status": "OK" if error is None else "ERROR", "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "watermark": json.dumps(self.watermark, sort_keys=True, default=str) if self.watermark else None,
            "error": error, "day": self.started_at.date(),
        }  # fmt: skip
        uri = table_uri(warehouse, JOB_RUNS.name)
        table = open_or_create(uri, JOB_RUNS, storage_options)
        write_deltalake(
            table, pa.Table.from_pylist([row], schema=JOB_RUNS.schema), mode="append", partition_by=["day"],
            writer_properties=writer_properties(JOB_RUNS), post_commithook_properties=NO_CHECKPOINT,
        )  # fmt: skip
