"""A store in the MySQL/MariaDB or PostgreSQL database the deployment already has (no Redis needed).

One row per budget in ``binance_weight_budget``; ``SELECT ... FOR UPDATE`` inside a transaction serialises the
read-modify-write across processes and pods, and the same state functions as every other store run in it.
The first-use insert is spoken in the server's dialect (MySQL and MariaDB, whichever scheme names them:
``INSERT IGNORE``; PostgreSQL: ``ON CONFLICT DO NOTHING``). Connections carry the database timeouts
(``binance_extractor.db_timeouts``; URL query parameters override the defaults), and the server ends a session
left idle inside a transaction after ``IDLE_TRANSACTION_S``, so a process cut off mid-transaction cannot hold the
budget's row lock for hours (MariaDB's ``idle_transaction_timeout``, PostgreSQL's
``idle_in_transaction_session_timeout``; MySQL has neither).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from binance_extractor import db_timeouts
from binance_extractor.errors import BudgetUnavailableError, InputError, SinkError
from binance_extractor.masking import mask_url

T = TypeVar("T")
TABLE = "binance_weight_budget"
IDLE_TRANSACTION_S = 20  # a budget transaction takes milliseconds; below the others' 30 s read timeout


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


class SqlBudgetStore:
    def __init__(self, url: str) -> None:
        import sqlalchemy as sa  # imported on use: only this store needs it

        self._sa = sa
        self._raw = url
        where = f"BINANCE_EXTRACTOR_BUDGET_URL {self.describe()}"
        try:  # its errors quote the URL's pieces, password included: never shown
            self.url = sa.engine.make_url(url)
        except (ValueError, sa.exc.ArgumentError):
            raise InputError(f"{where} is not a URL SQLAlchemy reads (percent-encode @ : / in the password)") from None
        if "@" in (self.url.host or ""):  # SQLAlchemy ends the password at its first "@", the rest becomes the host
            raise InputError(f"{where}: percent-encode the @ in the password as %40 (SQLAlchemy cannot read it raw)")
        query = {k: v for k, v in self.url.query.items() if isinstance(v, str)}
        backend = self.url.get_backend_name()
        answer_s: float | None = None
        args: dict[str, Any]
        try:
            if backend in ("mysql", "mariadb"):
                args = dict(db_timeouts.with_defaults(query, db_timeouts.MYSQL, where))
            else:
                args, answer_s = db_timeouts.postgres(query, where)
                args["options"] += f" -c idle_in_transaction_session_timeout={IDLE_TRANSACTION_S * 1000}"
            self._engine = sa.create_engine(self.url, pool_pre_ping=True, pool_size=2, connect_args=args)
        except (ImportError, sa.exc.ArgumentError) as exc:
            raise InputError(f"{where}: cannot use driver {self.url.drivername} ({exc})") from None
        except SinkError as exc:  # a timeout parameter that is not a number: it names itself
            raise InputError(str(exc)) from None
        self._mysql = self._engine.dialect.name in ("mysql", "mariadb")
        sa.event.listen(self._engine, "connect", lambda dbapi, _record: self._on_connect(dbapi, answer_s))
        self._ready = False

    def _on_connect(self, dbapi_conn: Any, answer_s: float | None) -> None:
        """Every new connection: the client's answer deadline (psycopg 3) and the server's idle-transaction limit."""
        if not self._mysql:
            if self._engine.dialect.driver == "psycopg":  # psycopg2 (if named) has no deadline: keepalives only
                db_timeouts.answer_within(dbapi_conn, answer_s)
            return
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"SET SESSION idle_transaction_timeout = {IDLE_TRANSACTION_S}")
        except Exception:
            pass  # MySQL has no such variable (error 1193): nothing to set
        finally:
            cur.close()

    def describe(self) -> str:
        return mask_url(self._raw)

    def _ensure_table(self, conn: Any) -> None:
        if not self._ready:
            conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (name VARCHAR(255) PRIMARY KEY, state TEXT NOT NULL)"
            )
            self._ready = True

    def transact(self, key: str, fn: Callable[[dict], T]) -> T:
        sa = self._sa
        insert = (
            f"INSERT IGNORE INTO {TABLE} (name, state) VALUES (:k, '{{}}')"
            if self._mysql
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
