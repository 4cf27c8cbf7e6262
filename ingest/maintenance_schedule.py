"""Table maintenance on a schedule inside the ingest service: every
`maintenance_interval_seconds` a child process runs `spanlake.tables.maintenance.maintain`.

A process, not a thread: delta-rs releases the GIL inside optimize and vacuum, and when the
interpreter exits while a thread is in there, CPython's exit path (pthread_exit on a thread that
wants the GIL back) unwinds through delta-rs' Rust frames and the process dies with SIGSEGV
(docs/MAINTENANCE.md, "Running beside ingest"). A spawned child also keeps maintenance's memory
(sorting a day loads it whole) and its GIL time out of the ingest loop.

It runs beside ingest's commits: maintenance takes a per-table lease (so several ingest
processes never rewrite the same files at once) and ingest retries a commit that lost a race
to it, so neither loses work. A failing run is logged and tried again next interval.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
import time
from collections.abc import Mapping
from multiprocessing.process import BaseProcess
from types import FrameType

from spanlake.settings import Settings
from spanlake.tables.maintenance import maintain

logger = logging.getLogger(__name__)

# How long ingest waits, on its way out, for a maintenance run to finish its current step.
STOP_GRACE_SECONDS = 30.0
_SPAWN = multiprocessing.get_context("spawn")  # fork would copy delta-rs' and Polars' thread pools' locks


class MaintenanceSchedule:
    def __init__(self, settings: Settings) -> None:
        self.warehouse = settings.warehouse
        self.storage_options = dict(settings.storage_options)
        self.retention_hours = settings.retention_hours
        self.interval = settings.maintenance_interval_seconds
        self.next_run = time.monotonic() + self.interval
        self.process: BaseProcess | None = None

    def start_if_due(self) -> None:
        if self.process is not None:
            if self.process.is_alive():
                return
            self._reap()
        if time.monotonic() < self.next_run:
            return
        self.next_run = time.monotonic() + self.interval
        self.process = _SPAWN.Process(
            target=run_maintenance,
            args=(self.warehouse, self.storage_options, self.retention_hours, logging.getLogger().getEffectiveLevel()),
            name="spanlake-maintenance",
            daemon=True,  # never outlives an ingest process that exits without stop()
        )
        self.process.start()

    def stop(self) -> None:
        """Stop a running maintenance run after its current step (it releases its leases)."""
        if self.process is None:
            return
        if self.process.is_alive():
            logger.info("stopping the maintenance run (pid %s) after its current step", self.process.pid)
            self.process.terminate()  # SIGTERM: run_maintenance turns it into SystemExit
            self.process.join(STOP_GRACE_SECONDS)
            if self.process.is_alive():  # its leases go to the next run on this host (docs/MAINTENANCE.md)
                logger.warning("maintenance run (pid %s) did not stop; killing it", self.process.pid)
                self.process.kill()
                self.process.join()
        self._reap()

    def _reap(self) -> None:
        assert self.process is not None
        self.process.join()
        if self.process.exitcode not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
            logger.warning("maintenance run failed (exit code %s); trying again next interval", self.process.exitcode)
        self.process.close()
        self.process = None


def run_maintenance(
    warehouse: str, storage_options: Mapping[str, str], retention_hours: float, log_level: int
) -> None:
    """The child process: one maintenance run, its report in the log."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for ingest, which then stops us
    try:
        report = maintain(warehouse, storage_options=storage_options, retention_hours=retention_hours)
    except SystemExit:
        logger.info("maintenance stopped early: ingest is shutting down")
        raise
    except Exception:
        logger.exception("maintenance run failed")
        sys.exit(1)
    for line in report.lines():
        logger.info("maintenance: %s", line)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Python runs this between two steps (never inside delta-rs), so `maintain` unwinds
    # through its `finally` blocks and releases the leases it holds.
    sys.exit(128 + signum)
