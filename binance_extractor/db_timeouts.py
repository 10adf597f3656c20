"""Network timeouts of every database connection: the sinks' (MySQL/MariaDB, PostgreSQL, MongoDB) and the SQL
weight-budget store's.

Without them a silent network partition (a dropped NAT entry, a stalled proxy or load balancer) leaves a call
waiting for the operating system's TCP timeouts, hours: a task hangs, and so does the live tail's single writer.
Each value is an extra of the Airflow connection (``{"read_timeout": 30}``, or ``?read_timeout=30`` in a
connection URI; for the budget store, a query parameter of ``BINANCE_EXTRACTOR_BUDGET_URL``). With the defaults a
stalled call fails within a minute, the sinks' retries included (docs/DATABASE_TIMEOUTS.md).

- MySQL/MariaDB: ``connect_timeout``, ``read_timeout``, ``write_timeout`` (seconds), given to the client library.
- PostgreSQL: libpq's own ``connect_timeout``, TCP keepalives and ``tcp_user_timeout`` (a peer that vanished),
  and ``statement_timeout`` in ``options``: the server cancels a longer statement, and the client waits no longer
  than that (plus ``ANSWER_GRACE_S``) for any answer (``answer_within``), because libpq has no read timeout and a
  path that accepts bytes but delivers nothing keeps TCP itself content.
- MongoDB: pymongo's ``connectTimeoutMS``, ``serverSelectionTimeoutMS`` and ``socketTimeoutMS``.

All names are the drivers' own, so another hook reading the same Airflow connection passes them on unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from binance_extractor.errors import SinkError

MYSQL: dict[str, int] = {"connect_timeout": 5, "read_timeout": 30, "write_timeout": 30}  # seconds
POSTGRES: dict[str, int] = {
    "connect_timeout": 5,  # seconds
    "keepalives": 1,
    "keepalives_idle": 30,  # seconds idle before the first probe; 3 probes 10 s apart: a dead peer in ~60 s
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,  # ms that sent data may stay unacknowledged
}
POSTGRES_STATEMENT_TIMEOUT_MS = 30_000
ANSWER_GRACE_S = 2.0  # the server's own statement_timeout answers first on a healthy network
MONGO: dict[str, int] = {"connectTimeoutMS": 5_000, "serverSelectionTimeoutMS": 5_000, "socketTimeoutMS": 30_000}

_STATEMENT_TIMEOUT = re.compile(r"(?:^|\s)(?:-c\s*|--)statement[_-]timeout\s*=\s*(\S+)")
_PG_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?")
_PG_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "min": 60_000.0, "h": 3_600_000.0, "d": 86_400_000.0}


def with_defaults(extras: Mapping[str, Any], defaults: Mapping[str, int], where: str) -> dict[str, int]:
    """``defaults``, each overridden by the extra of the same name: a whole number >= 0 (0: the driver's "no
    limit"), a fraction rounded up. A value that is not a number is a one-line ``SinkError`` naming it."""
    out = dict(defaults)
    for key in defaults:
        raw = extras.get(key)
        if raw is None or raw == "":
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = -1.0
        if not math.isfinite(value) or value < 0:
            raise SinkError(f"{where}: {key} must be a number >= 0, not {raw!r}")
        out[key] = math.ceil(value)
    return out


def statement_timeout_ms(options: str, where: str) -> float | None:
    """The ``statement_timeout`` set in a libpq ``options`` string (``-c statement_timeout=30s``), in ms."""
    m = _STATEMENT_TIMEOUT.search(options)
    if m is None:
        return None
    value = _PG_DURATION.fullmatch(m.group(1).strip("'\""))
    if value is None:
        raise SinkError(f"{where}: statement_timeout in options must be a duration like 30s or 30000, not {m.group(1)}")
    return float(value.group(1)) * _PG_UNITS_MS[value.group(2) or "ms"]


def postgres(extras: Mapping[str, Any], where: str) -> tuple[dict[str, Any], float | None]:
    """The libpq parameters to connect with (the extras, with our defaults where they say nothing) and how long
    the client waits for any answer (None: ``statement_timeout`` was set to 0, no limit)."""
    out: dict[str, Any] = {**extras, **with_defaults(extras, POSTGRES, where)}
    options = str(extras.get("options") or "")
    ms = statement_timeout_ms(options, where)
    if ms is None:
        ms = POSTGRES_STATEMENT_TIMEOUT_MS
        options = f"{options} -c statement_timeout={ms}".strip()
    out["options"] = options
    return out, (ms / 1000 + ANSWER_GRACE_S if ms else None)


def answer_within(conn: Any, seconds: float | None) -> None:
    """Make every wait of a psycopg 3 connection for the server (a statement, a commit, a COPY block) end after
    ``seconds``: the connection is closed and the call raises ``OperationalError`` (transient: the sinks retry it
    on a new connection). psycopg's ``Connection.wait`` takes this deadline; nothing else of the driver changes."""
    if seconds is None:
        return
    import psycopg

    wait = conn.wait

    def timed(gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:  # 0.1: psycopg's interval
        try:
            return wait(gen, interval, seconds if timeout is None else timeout)
        except psycopg.errors._WaitTimeout:
            conn.close()  # the protocol is mid-statement: this connection cannot be used again
            raise psycopg.OperationalError(
                f"no answer from the server within {seconds:g} s (statement_timeout + {ANSWER_GRACE_S:g} s); "
                "connection closed"
            ) from None

    conn.wait = timed


__all__ = ["MONGO", "MYSQL", "POSTGRES", "answer_within", "postgres", "statement_timeout_ms", "with_defaults"]
