"""Dead letters: messages (or single spans) that could not be ingested, kept with the reason.

A bad message never stops a partition and is never dropped silently: whatever stage fails
for it (decode, one span, building its rows), it becomes a row of `ingest_errors` with that
stage, its topic, partition, offset and raw bytes. With a masker, every row's key, payload and
error are masked as it is added.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from spanlake.ingest.masking import Masker
from spanlake.tables.schemas import INGEST_ERRORS

# decode: the message is not an OTLP request; span: one span of it was rejected; rows: turning
# its spans into rows failed (conventions, row building, Arrow conversion)
Stage = Literal["decode", "span", "rows"]
MAX_ERROR_CHARS = 1000


def describe(exc: BaseException) -> str:
    """One line for an unexpected error: its type, message and notes, whitespace folded."""
    line = " ".join(" ".join([f"{type(exc).__name__}: {exc}", *getattr(exc, "__notes__", ())]).split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 3] + "..."


@dataclass
class DeadLetters:
    masker: Masker | None = None
    cols: dict[str, list] = field(
        default_factory=lambda: {c: [] for c in INGEST_ERRORS.column_names if c not in ("ingested_at", "day")}
    )

    def __len__(self) -> int:
        return len(self.cols["error"])

    def add(
        self,
        *,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        error: str,
        stage: Stage,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> None:
        if self.masker is not None:  # an error quotes what it rejects, a payload is whatever came
            key, value, error = self.masker.mask_dead_letter(key, value, error)
        for name, item in (
            ("topic", topic), ("partition", partition), ("offset", offset), ("key", key), ("value", value),
            ("error", error), ("trace_id", trace_id), ("span_id", span_id), ("stage", stage),
        ):  # fmt: skip
            self.cols[name].append(item)

    def table(self, ingested_at: dt.datetime) -> pa.Table:
        n = len(self)
        arrays = {c.name: pa.array(self.cols[c.name], c.type) for c in INGEST_ERRORS.columns if c.name in self.cols}
        arrays["ingested_at"] = pa.array([ingested_at] * n, pa.timestamp("us", tz="UTC"))
        arrays["day"] = pc.cast(arrays["ingested_at"], pa.date32())
        return pa.table(arrays, schema=INGEST_ERRORS.schema)
