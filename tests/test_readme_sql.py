"""The SQL examples of docs/STORAGE.md ("Reading the data") run as written on real MariaDB and SQLite stores."""

from __future__ import annotations

import re
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import GapRecord, Sink
from tests.binance_extractor.sinks.conftest import klines

KLINES_M5 = Dataset.of_table("klines_m5")

DOC = Path(__file__).resolve().parents[1] / "docs" / "STORAGE.md"


def examples(dialect: str) -> list[str]:
    text = DOC.read_text()
    return re.findall(rf"<!-- sql:{dialect} -->\n```sql\n(.*?)```", text, flags=re.S)


def fill(sink: Sink) -> list:
    rows = klines("XRPUSDT", n=300)
    sink.write(KLINES_M5, rows)
    sink.write(KLINES_M5, klines("BTCUSDT", n=24))
    sink.record_gap(GapRecord("klines_m5", "XRPUSDT", rows[10].open_time, rows[12].open_time, "readme", "rest", 1))
    return rows


def test_there_are_examples_for_both() -> None:
    assert len(examples("mysql")) >= 2 and len(examples("sqlite")) >= 2


@pytest.mark.mysql
def test_mysql_examples(mysql_conn_id: str) -> None:
    from binance_extractor.sinks.mysql import MySqlStore

    with MySqlStore(mysql_conn_id) as sink:
        rows = fill(sink)
        day, hourly = (sink.query(sql.replace("%", "%%")) for sql in examples("mysql")[:2])
    assert len(day) == 288  # 2021-11-15, every 5 minutes
    assert day[0][5] == rows[0].close and isinstance(day[0][5], Decimal)
    counts = {(r[0], r[1]): int(r[3]) for r in hourly}
    assert counts[("XRPUSDT", "2021-11-15 00:00")] == 12 and counts[("BTCUSDT", "2021-11-15 01:00")] == 12
    assert sum(Decimal(r[2]) for r in hourly if r[0] == "XRPUSDT") == sum(r.volume for r in rows[:288])


def test_sqlite_examples(sqlite_conn_id: str) -> None:
    from binance_extractor.sinks.sqlite import SqliteStore

    with SqliteStore(sqlite_conn_id) as sink:
        rows = fill(sink)
        path = sink.path
    conn = sqlite3.connect(path)
    try:
        day, ledger = (conn.execute(sql).fetchall() for sql in examples("sqlite")[:2])
    finally:
        conn.close()
    assert len(day) == 288
    assert day[0][1] == "2021-11-15T00:00:00Z" and Decimal(day[0][5]) == rows[0].close
    assert ledger == [("klines_m5", "XRPUSDT", "2021-11-15T00:50:00Z", "2021-11-15T01:00:00Z", "rest", 1)]
