"""What the image tests compare: the 1h candles a database holds and the ones the emulator serves, as
(open time in ms, open, high, low, close, volume) with Decimal prices."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from binance_extractor.timeutil import dt_to_ms


def stored(database: str, symbol: str) -> list[tuple[Any, ...]]:
    from tests.fixtures.databases import mysql_admin

    conn = mysql_admin()
    try:
        cur = conn.cursor()
        cur.execute(
            f"SELECT open_time, open, high, low, close, volume FROM `{database}`.klines_h1 WHERE symbol=%s ORDER BY 1",
            (symbol,),
        )
        return [(dt_to_ms(r[0].replace(tzinfo=UTC)), *r[1:]) for r in cur.fetchall()]
    finally:
        conn.close()


def served(emulator: Any, symbol: str, start: datetime, end: datetime) -> list[tuple[Any, ...]]:
    """The emulator's closed 1h candles opening in [start, end)."""
    rows = emulator.klines_rows(symbol, "1h", dt_to_ms(start), dt_to_ms(end) - 1)
    return [(r[0], *(Decimal(x) for x in r[1:6])) for r in rows]
