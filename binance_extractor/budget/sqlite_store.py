"""The embedded store: one SQLite file in the data directory, shared by every process of the machine.

``BEGIN IMMEDIATE`` takes the database's write lock before reading, so a read-modify-write of the state is
atomic across processes; WAL keeps those transactions short. No service is needed.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from binance_extractor.errors import BudgetUnavailableError

T = TypeVar("T")


class SqliteBudgetStore:
    def __init__(self, path: Path, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(self.path), timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS weight_budget (name TEXT PRIMARY KEY, state TEXT NOT NULL)")
            self._conn = conn
        return self._conn

    def transact(self, key: str, fn: Callable[[dict], T]) -> T:
        with self._lock:
            try:
                conn = self._connect()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute("SELECT state FROM weight_budget WHERE name = ?", (key,)).fetchone()
                    state = json.loads(row[0]) if row else {}
                    result = fn(state)
                    conn.execute(
                        "INSERT INTO weight_budget (name, state) VALUES (?, ?) "
                        "ON CONFLICT(name) DO UPDATE SET state = excluded.state",
                        (key, json.dumps(state, separators=(",", ":"))),
                    )
                    conn.execute("COMMIT")
                    return result
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError) as exc:
                self._drop()
                raise BudgetUnavailableError(
                    f"weight budget store {self.describe()} unreachable ({type(exc).__name__}: {exc}); nothing was sent"
                ) from None

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()
