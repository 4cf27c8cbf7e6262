"""Kept judge answers, keyed by (judge name, model, rendered prompt), so a re-run pays nothing twice.

A local SQLite file rather than a warehouse table: each answer is kept the moment it is paid for
(a run killed half-way loses nothing), from many threads and processes at once (SQLite locks
the file), where a Delta commit per verdict would cost more than the lookup saves and 64
threads committing would conflict. Only answers that parsed as a verdict are kept; the API key
is never part of a row.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Kept:
    content: str
    model: str
    input_tokens: int
    output_tokens: int


def cache_key(judge: str, model: str, messages: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps([judge, model, messages], ensure_ascii=False).encode()).hexdigest()


class VerdictCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()  # one connection shared by the judge threads; statements take microseconds
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")  # readers in other processes do not block the writer
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, judge TEXT NOT NULL, model TEXT NOT NULL,"
            " content TEXT NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,"
            " kept_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )

    def get(self, key: str) -> Kept | None:
        with self._lock:
            row = self._db.execute(
                "SELECT content, model, input_tokens, output_tokens FROM verdicts WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else Kept(*row)

    def put(self, key: str, judge: str, kept: Kept) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO verdicts (key, judge, model, content, input_tokens, output_tokens)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, judge, kept.model, kept.content, kept.input_tokens, kept.output_tokens),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM verdicts").fetchone()[0])

    def __repr__(self) -> str:
        return f"VerdictCache({str(self.path)!r})"
