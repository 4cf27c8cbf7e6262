"""Deliberate crash points, for the fault tests only (SPANLAKE_CRASH_AT): the ingest process
SIGKILLs itself at the named point of a batch, so a test can check the restart repairs it."""

from __future__ import annotations

import logging
import os
import signal

logger = logging.getLogger(__name__)

CRASH_POINTS = (
    "before_commit",  # decoded and buffered, nothing written
    "after_span_data",
    "after_trace_info",
    "after_open_traces",
    "after_ingest_errors",
    "after_delta_commit",  # every table written, Kafka offsets not yet committed
    "after_offset_commit",
)


def crash_if(point: str, crash_at: str | None) -> None:
    if crash_at == point:
        logger.warning("crash_at=%s: killing this process on purpose", point)
        os.kill(os.getpid(), signal.SIGKILL)
