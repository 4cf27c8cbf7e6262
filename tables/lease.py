"""A lease kept as txn actions in a table's own log: one holder at a time for work that two
processes must never do at once (maintenance rewriting a table, a scoring job writing one
scorer's results).

The holder commits an empty append carrying txn(app_id, expiry in epoch ms), from the handle it
read the old expiry with; a concurrent commit of the same app id fails ("Concurrent transaction
failed"), exactly as for ingest's offsets. The same commit names the holder: its pid and a hash
of its host (`<app_id>-pid`, `<app_id>-host`).

A holder killed while holding the lease (SIGKILL, OOM, a lost machine) never releases it. A
process on the same host takes it over at once when that pid is gone; one elsewhere cannot
tell, reports who holds it until when, and gets it once the lease expires (`seconds`; a live
holder renews it between steps).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from spanlake.tables.delta import NO_CHECKPOINT
from spanlake.tables.schemas import spec

logger = logging.getLogger(__name__)


class Lease:
    def __init__(self, table: DeltaTable, name: str, seconds: float, app_id: str, holder_kind: str) -> None:
        self.table = table
        self.name = name
        self.schema = spec(name).schema
        self.ms = int(seconds * 1000)
        self.app_id = app_id
        self.pid_app_id = f"{app_id}-pid"
        self.host_app_id = f"{app_id}-host"
        self.holder_kind = holder_kind  # "maintenance run", for messages
        self.until = 0  # our expiry while we hold it

    def holder(self) -> str:
        """Who holds the lease until when, for a one-line message."""
        stored = self.table.transaction_version(self.app_id) or 0
        until = dt.datetime.fromtimestamp(stored / 1000, dt.timezone.utc).isoformat(timespec="seconds")
        pid = self.table.transaction_version(self.pid_app_id)
        if pid is None:
            return f"until {until}"
        where = "this host" if self.table.transaction_version(self.host_app_id) == _host_id() else "another host"
        return f"pid {pid} on {where}, until {until}"

    def acquire(self) -> bool:
        self.table.update_incremental()
        now = _now_ms()
        if (self.table.transaction_version(self.app_id) or 0) > now:
            gone = self._holder_gone()
            if gone is None:
                return False
            logger.warning("%s: took over the lease of %s pid %d on this host: that process is gone",
                           self.name, self.holder_kind, gone)  # fmt: skip
        self._commit(now + self.ms)
        return True

    def held(self) -> bool:
        """Whether we still hold it (no one took it over after it expired)."""
        self.table.update_incremental()
        return self.until > 0 and self.table.transaction_version(self.app_id) == self.until

    def renew(self) -> bool:
        """Extend the lease once half of it is used; False when another holder took it over."""
        if not self.held():
            return False
        if self.until - _now_ms() < self.ms // 2:
            self._commit(_now_ms() + self.ms)
        return True

    def release(self, also: Sequence[Transaction] = ()) -> bool:
        """Give the lease up; `also`: txn actions to record in the same commit."""
        if self.held():
            self._commit(_now_ms(), also)
            self.until = 0
        return True

    def _holder_gone(self) -> int | None:
        """The holder's pid when it ran on this host and is no longer running, else None."""
        pid = self.table.transaction_version(self.pid_app_id)
        if pid is None or pid == os.getpid() or self.table.transaction_version(self.host_app_id) != _host_id():
            return None  # unknown, ourselves (another thread's run), or elsewhere: wait for expiry
        return None if _pid_running(pid) else pid

    def _commit(self, until: int, also: Sequence[Transaction] = ()) -> None:
        holder = [Transaction(self.pid_app_id, os.getpid()), Transaction(self.host_app_id, _host_id())]
        write_deltalake(
            self.table, self.schema.empty_table(), mode="append", partition_by=["day"],
            commit_properties=CommitProperties(app_transactions=[Transaction(self.app_id, until), *holder, *also]),
            post_commithook_properties=NO_CHECKPOINT,
        )  # fmt: skip
        self.until = until


@functools.cache
def _host_id() -> int:
    """Where a pid means one process: host name, boot and pid namespace, hashed to a txn version."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(path) if path.endswith("/pid") else Path(path).read_text().strip())
        except OSError:
            pass
    return int.from_bytes(hashlib.sha256("\0".join(parts).encode()).digest()[:8], "big") >> 1  # >= 0, fits i64


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:  # a zombie (killed, not yet reaped by its parent) is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _now_ms() -> int:
    return int(time.time() * 1000)
