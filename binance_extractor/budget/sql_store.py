"""A store in the MySQL/MariaDB or PostgreSQL database the deployment already has (no Redis needed).

One row per budget in ``binance_weight_budget``; ``SELECT ... FOR UPDATE`` inside a transaction serialises the
read-modify-write across processes and pods, and the same state functions as every other store run in it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from binance_extractor.errors import BudgetUnavailableError

T = TypeVar("T")
TABLE = "binance_weight_budget"


# First use of a budget key: concurrent ``SELECT ... FOR UPDATE`` on a missing row, then INSERT, can deadlock in
# InnoDB (gap locks) or PostgreSQL; the loser is rolled back whole, so retrying it is safe.
DEADLOCK_RETRIES = 8
_LOCK_CONFLICT_CODES = {1213, 1205}  # MySQL/MariaDB: deadlock, lock wait timeout
_LOCK_CONFLICT_STATES = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialization failure


def _lock_conflict(exc: Any) -> bool:
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    return code in _LOCK_CONFLICT_CODES or getattr(orig, "pgcode", None) in _LOCK_CONFLICT_STATES


class SqlStore:
    def __init__(self, url: str, connect_timeout_s: int = 5) -> None:
        import sqlalchemy as sa  # imported on use: only this store needs it

        self._sa = sa
        self.url = sa.engine.make_url(url)
        args: dict[str, Any] = {"connect_timeout": connect_timeout_s}
        self._engine = sa.create_engine(self.url, pool_pre_ping=True, pool_size=2, connect_args=args)
        self._ready = False

    def describe(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def _ensure_table(self, conn: Any) -> None:
        if not self._ready:
            conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (name VARCHAR(255) PRIMARY KEY, state TEXT NOT NULL)"
            )
            self._ready = True

    def transact(self, key: str, fn: Callable[[dict], T]) -> T:
        sa = self._sa
        mysql = self.url.get_backend_name() == "mysql"
        insert = (
            f"INSERT IGNORE INTO {TABLE} (name, state) VALUES (:k, '{{}}')"
            if mysql
            else f"INSERT INTO {TABLE} (name, state) VALUES (:k, '{{}}') ON CONFLICT (name) DO NOTHING"
        )
        for attempt in range(DEADLOCK_RETRIES):
            try:
                return self._transact_once(key, fn, insert)
            except sa.exc.OperationalError as exc:
                if not _lock_conflict(exc) or attempt == DEADLOCK_RETRIES - 1:
                    raise self._unavailable(exc) from None
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))  # the other transaction finishes first
            except sa.exc.SQLAlchemyError as exc:
                raise self._unavailable(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _unavailable(self, exc: BaseException) -> BudgetUnavailableError:
        self._ready = False
        return BudgetUnavailableError(
            f"weight budget store {self.describe()} unreachable ({type(exc).__name__}); nothing was sent"
        )

    def _transact_once(self, key: str, fn: Callable[[dict], T], insert: str) -> T:
        sa = self._sa
        with self._engine.begin() as conn:
            self._ensure_table(conn)
            row = conn.execute(sa.text(f"SELECT state FROM {TABLE} WHERE name = :k FOR UPDATE"), {"k": key}).first()
            if row is None:
                conn.execute(sa.text(insert), {"k": key})
                row = conn.execute(sa.text(f"SELECT state FROM {TABLE} WHERE name = :k FOR UPDATE"), {"k": key}).first()
            state = json.loads(row[0]) if row else {}
            result = fn(state)
            conn.execute(
                sa.text(f"UPDATE {TABLE} SET state = :s WHERE name = :k"),
                {"s": json.dumps(state, separators=(",", ":")), "k": key},
            )
            return result

    def close(self) -> None:
        self._engine.dispose()
