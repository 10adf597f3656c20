"""The embedded store: one SQLite file in the data directory, shared by every process of the machine.

``BEGIN IMMEDIATE`` takes the database's write lock before reading, so a read-modify-write of the state is
atomic across processes; WAL keeps those transactions short. No service is needed.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from binance_extractor.errors import BudgetUnavailableError

T = TypeVar("T")
_BUSY_PAUSE_S = 0.01


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


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
        """Run ``fn`` on the state in one write transaction. SQLite may answer SQLITE_BUSY at once, without its
        busy timeout: the switch to WAL while another connection holds a write lock (deadlock avoidance; seen when
        several processes open a new budget file at the same instant), and the WAL states its documentation lists.
        Those are tried again until ``busy_timeout_s``, like any lock wait, before the store counts as gone."""
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                return self._transact(key, fn)
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    raise self._unavailable(exc) from None
                time.sleep(_BUSY_PAUSE_S)
            except (sqlite3.Error, OSError) as exc:
                raise self._unavailable(exc) from None

    def _unavailable(self, exc: BaseException) -> BudgetUnavailableError:
        return BudgetUnavailableError(
            f"weight budget store {self.describe()} unreachable ({type(exc).__name__}: {exc}); nothing was sent"
        )

    def _transact(self, key: str, fn: Callable[[dict], T]) -> T:
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
            except (sqlite3.Error, OSError):
                self._drop()
                raise

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()
