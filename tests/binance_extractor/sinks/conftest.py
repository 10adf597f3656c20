"""Sink test helpers: real market rows (shared/fixtures/binance-real) and a sink factory per store."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import pytest

from binance_extractor import timeframes
from binance_extractor.models import AggTrade, FundingRate, Kline, Trade
from binance_extractor.sinks.base import Sink
from tests.emulator.data import FIXTURES
from tests.fixtures.databases import POSTGRES_HOST, POSTGRES_PORT, TcpProxy

REAL = FIXTURES  # ../shared/fixtures/binance-real
SINK_KINDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("mysql", id="mysql", marks=pytest.mark.mysql),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mongo", id="mongo", marks=pytest.mark.mongo),
]


@lru_cache
def _json(name: str) -> list[Any]:
    return json.loads((REAL / name).read_text())


def klines(
    symbol: str = "XRPUSDT", n: int = 300, scale: int = 0, extra: Decimal = Decimal(0), offset: int = 0
) -> list[Kline]:
    """Real XRP 5m candles; ``scale`` moves the decimal point left (low-priced contracts, 8+ decimals),
    ``extra`` is added to the volumes (a changed, later value of the same candle)."""
    tf = timeframes.parse("5m")
    shift = Decimal(1).scaleb(-scale)
    out = []
    for row in _json("XRPUSDT-5m-ohlcv.json")[offset : offset + n]:
        t, o, h, low, c, v = row
        vol = Decimal(v) + extra
        close = Decimal(c) * shift
        quote = vol * close * 10_000  # > 10^10: wide quote volumes must survive too
        out.append(
            Kline.build(
                symbol=symbol,
                interval="5m",
                open_time=t,
                close_time=tf.close_ms(t),
                open=Decimal(o) * shift,
                high=Decimal(h) * shift,
                low=Decimal(low) * shift,
                close=close,
                volume=vol,
                quote_volume=quote,
                trade_count=int(vol) % 100_000,
                taker_buy_base_volume=vol / 2,
                taker_buy_quote_volume=quote / 2,
            )
        )
    return out


def funding(symbol: str = "XRPUSDT") -> list[FundingRate]:
    return [
        FundingRate.build(symbol=symbol, funding_time=t, funding_rate=r, mark_price=None if i % 2 else "1.0512")
        for i, (t, r) in enumerate(_json("XRPUSDT-funding.json"))
    ]


def trades(symbol: str = "XRPETH", n: int = 500) -> list[Trade]:
    out = []
    for t, tid, side, price, qty in _json("XRPETH-trades.json")[:n]:
        out.append(
            Trade.build(
                symbol=symbol,
                trade_id=tid + 2**40,  # beyond 32 bits
                price=price,
                quantity=qty,
                quote_quantity=Decimal(price) * Decimal(qty),
                time=t,
                is_buyer_maker=side == "sell",
                commission="0.00000123" if tid % 3 == 0 else None,
                commission_asset="BNB" if tid % 3 == 0 else None,
            )
        )
    return out


def agg_trades(symbol: str = "XRPETH", n: int = 300) -> list[AggTrade]:
    out = []
    for i, (t, tid, side, price, qty) in enumerate(_json("XRPETH-trades.json")[:n]):
        out.append(
            AggTrade.build(
                symbol=symbol,
                agg_trade_id=3_000_000_000 + i,
                price=price,
                quantity=qty,
                first_trade_id=tid,
                last_trade_id=tid + i % 3,
                time=t,
                is_buyer_maker=side == "buy",
            )
        )
    return out


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def assert_utc(value: datetime) -> None:
    assert value.tzinfo is not None and value.utcoffset() == UTC.utcoffset(None), value


def new_sink(kind: str, conn_id: str, **kw: Any) -> Sink:
    from binance_extractor.sinks.mongo import MongoStore
    from binance_extractor.sinks.mysql import MySqlStore
    from binance_extractor.sinks.postgres import PostgresStore
    from binance_extractor.sinks.sqlite import SqliteStore

    if kind == "mongo":
        kw.setdefault("server_timeout_ms", 2000)
    cls: Any = {"sqlite": SqliteStore, "mysql": MySqlStore, "postgres": PostgresStore, "mongo": MongoStore}[kind]
    return cls(conn_id, **kw)


@pytest.fixture(params=SINK_KINDS)
def sink_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_sink(sink_kind: str, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``make_sink(**kw)``: a new sink of the parametrized kind on this test's fresh database."""
    conn_id = request.getfixturevalue(f"{sink_kind}_conn_id")
    opened: list[Sink] = []

    def make(**kw: Any) -> Any:
        kw.setdefault("retry_attempts", 3)
        sink = new_sink(sink_kind, conn_id, **kw)
        opened.append(sink)
        return sink

    yield make
    for sink in opened:
        sink.close()


@pytest.fixture
def sink(make_sink: Callable[..., Any]) -> Any:
    s = make_sink()
    s.ensure_schema()
    return s


@pytest.fixture(params=SINK_KINDS)
def store(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(kind, conn id) of each store on this test's fresh database, for tests that open sinks through the CLI."""
    kind = str(request.param)
    return kind, request.getfixturevalue(f"{kind}_conn_id")


@pytest.fixture
def proxied(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, TcpProxy]]:
    """(kind, conn id, proxy) of MariaDB or PostgreSQL (``indirect`` param) reached through a loopback proxy the
    test can cut mid-load."""
    kind = request.param
    if kind == "mysql":
        conn_id, proxy = request.getfixturevalue("mysql_proxy_conn_id")
        yield kind, conn_id, proxy
        return
    db = request.getfixturevalue("postgres_database")
    proxy = TcpProxy(POSTGRES_HOST, POSTGRES_PORT)
    proxy.start()
    monkeypatch.setenv("AIRFLOW_CONN_POSTGRES_DEFAULT", f"postgres://postgres@127.0.0.1:{proxy.port}/{db}")
    try:
        yield kind, "postgres_default", proxy
    finally:
        proxy.cut()
