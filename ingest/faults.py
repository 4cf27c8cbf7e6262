"""Deliberate faults, for the fault tests only: crash points (SPANLAKE_CRASH_AT), where the ingest
process SIGKILLs itself at the named point of a batch, so a test can check the restart repairs it;
and storage failures (SPANLAKE_FAIL_WRITES), so a test can check the run loop retries them."""

from __future__ import annotations

import errno
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


class WriteFaults:
    """`<table>:<n>`: the first n writes of that table raise OSError (a full disk) before writing."""

    def __init__(self, spec: str) -> None:
        table, _, times = spec.partition(":")
        self.table, self.left = table, int(times or 0)

    def check(self, table: str) -> None:
        if table == self.table and self.left > 0:
            self.left -= 1
            raise OSError(errno.ENOSPC, f"No space left on device (injected by SPANLAKE_FAIL_WRITES, {self.left} left)")
