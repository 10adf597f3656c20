"""A day of every kind of row in a store, and each table dumped as the database's own text (byte-level equality).

The dump casts every column to text inside the database (``CAST(c AS CHAR)`` on MySQL, ``c::text`` on PostgreSQL,
the stored TEXT/INTEGER on SQLite), so two dumps are equal only if the tables hold the same bytes, not merely
equal values.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest

from binance_extractor import timeframes
from binance_extractor.kinds import Dataset
from binance_extractor.models import Kline
from binance_extractor.sinks.base import GapRecord, RunRecord, Store
from binance_extractor.sinks.schema import spec_for
from tests.binance_extractor.sinks.conftest import agg_trades, funding, klines, new_sink, trades
from tests.fixtures.databases import MYSQL_HOST, MYSQL_PORT, POSTGRES_HOST, POSTGRES_PORT, mysql_admin, postgres_admin

AGG_TRADES = Dataset.of_table("agg_trades")
FUNDING_RATES = Dataset.of_table("funding_rates")
KLINES_H1 = Dataset.of_table("klines_h1")
KLINES_M5 = Dataset.of_table("klines_m5")
TRADES = Dataset.of_table("trades")

DAY = 288  # m5 candles
TABLES = ("klines_m5", "klines_h1", "funding_rates", "agg_trades", "trades")
BOOKKEEPING = ("gap_ledger", "extraction_runs")


def tiny_klines(symbol: str, n: int) -> list[Kline]:
    """h1 candles of a low-priced contract: 8 places (1.0E-7 as str()), zero volumes written as 0.00000000."""
    tf = timeframes.parse("1h")
    t0 = 1_636_934_400_000
    out = []
    for i in range(n):
        t = t0 + i * tf.ms
        p = Decimal("0.00000010") + Decimal(i) / Decimal(10**8)
        vol = Decimal("0.00000000") if i % 3 == 0 else Decimal("12.5")
        out.append(
            Kline.build(
                symbol=symbol, interval="1h", open_time=t, close_time=tf.close_ms(t), open=p, high=p + Decimal("1E-8"),
                low=p, close=p, volume=vol, quote_volume=vol * p, trade_count=i, taker_buy_base_volume=vol,
                taker_buy_quote_volume=Decimal("0"),
            )
        )  # fmt: skip
    return out


def fill(store: Store) -> dict[str, int]:
    """A day of m5 candles of two symbols (varied decimal places), h1 candles with 8-place and zero values,
    funding (half without mark price), aggregate and individual trades, three ledger holes, four audit runs."""
    m5 = klines("XRPUSDT", n=DAY, scale=0) + klines("ETHUSDT", n=DAY, scale=6, extra=Decimal("0.125"))
    store.write(KLINES_M5, m5)
    store.write(KLINES_H1, tiny_klines("XRPUSDT", 24))
    store.write(FUNDING_RATES, funding("XRPUSDT")[:30])
    store.write(AGG_TRADES, agg_trades("XRPETH", n=200))
    store.write(TRADES, trades("XRPETH", n=200))
    for i in range(3):
        start = m5[10 + 20 * i].open_time
        store.record_gap(GapRecord("klines_m5", "XRPUSDT", start, start + timedelta(minutes=10), "test", "rest", i))
    runs = [
        RunRecord(
            str(uuid.UUID(int=i + 1)), "klines", "klines_m5", sym, "5m", m5[0].open_time, m5[-1].open_time, "cli",
            rows_written=DAY, started_at=m5[i].open_time, finished_at=m5[i + 1].open_time,
            outcome="success" if i else "failed", error=None if i else "boom: the exchange said no",
        )
        for i, sym in enumerate(["XRPUSDT", "ETHUSDT", "XRPUSDT", None])
    ]  # fmt: skip
    for run in runs:
        store.record_run(run)
    return {"klines_m5": 2 * DAY, "klines_h1": 24, "funding_rates": 30, "agg_trades": 200, "trades": 200}


def dump(store: Any, table: str) -> list[tuple[str | None, ...]]:
    """Every row of ``table`` as the database's text of each column, in key order."""
    spec = spec_for(table)
    q = store._q
    cast = {"mysql": "CAST({} AS CHAR)", "postgres": "{}::text", "sqlite": "CAST({} AS TEXT)"}[store.name]
    cols = ", ".join(cast.format(q(c)) for c in spec.column_names)
    order = ", ".join(q(k) for k in spec.key)
    return [tuple(r) for r in store.query(f"SELECT {cols} FROM {q(table)} ORDER BY {order}")]


def dump_all(store: Any) -> dict[str, list[tuple[str | None, ...]]]:
    return {t: dump(store, t) for t in (*TABLES, *BOOKKEEPING)}


SQL_KINDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture
def second_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[Callable[[str], Store]]:
    """``second_store(kind)``: another empty store of that kind (its own database), under conn id ``restored``."""
    made: list[tuple[str, str, Store]] = []

    def make(kind: str) -> Store:
        name = f"bx_test_{uuid.uuid4().hex[:8]}"
        if kind == "mysql":
            mysql_admin().cursor().execute(f"CREATE DATABASE `{name}`")
            uri = f"mysql://root@{MYSQL_HOST}:{MYSQL_PORT}/{name}"
        elif kind == "postgres":
            with postgres_admin() as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            uri = f"postgres://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
        else:
            uri = "sqlite://" + quote(str(tmp_path / f"{name}.sqlite"), safe="")
        monkeypatch.setenv("AIRFLOW_CONN_RESTORED", uri)
        store: Any = new_sink(kind, "restored", retry_attempts=2)
        store.ensure_schema()
        made.append((kind, name, store))
        return store  # type: ignore[no-any-return]

    yield make
    for kind, name, store in made:
        store.close()
        if kind == "mysql":
            mysql_admin().cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        elif kind == "postgres":
            with postgres_admin() as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
