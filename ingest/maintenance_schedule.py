"""Table maintenance on a schedule inside the ingest service: a background thread runs
`spanlake.tables.maintenance.maintain` every `maintenance_interval_seconds`.

It runs beside ingest's commits: maintenance takes a per-table lease (so several ingest
processes never rewrite the same files at once) and ingest retries a commit that lost a race
to it, so neither loses work. A failing run is logged and tried again next interval.
"""

from __future__ import annotations

import logging
import threading
import time

from spanlake.settings import Settings
from spanlake.tables.maintenance import maintain

logger = logging.getLogger(__name__)


class MaintenanceSchedule:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval = settings.maintenance_interval_seconds
        self.next_run = time.monotonic() + self.interval
        self.thread: threading.Thread | None = None

    def start_if_due(self) -> None:
        if time.monotonic() < self.next_run or (self.thread and self.thread.is_alive()):
            return
        self.next_run = time.monotonic() + self.interval
        self.thread = threading.Thread(target=self.run_once, name="spanlake-maintenance", daemon=True)
        self.thread.start()

    def run_once(self) -> None:
        try:
            report = maintain(
                self.settings.warehouse,
                storage_options=self.settings.storage_options,
                retention_hours=self.settings.retention_hours,
            )
            for line in report.lines():
                logger.info("maintenance: %s", line)
        except Exception:  # never into the ingest loop: the next interval tries again
            logger.exception("maintenance run failed")
