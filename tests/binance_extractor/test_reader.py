"""``binance_extractor.read``: exact decimals, aware UTC times, ranges and symbols, from every store."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest

import binance_extractor
from binance_extractor import reader
from binance_extractor.errors import InputError
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import Sink
from tests.binance_extractor.sinks.conftest import dt, funding, klines, trades
from tests.binance_extractor.store_helpers import store, store_kind  # noqa: F401

FUNDING_RATES = Dataset.of_table("funding_rates")
KLINES_H1 = Dataset.of_table("klines_h1")
KLINES_M5 = Dataset.of_table("klines_m5")
TRADES = Dataset.of_table("trades")

DEC = pa.decimal128(38, 18)


def test_read_klines_exact_decimals_and_utc(store: Sink) -> None:  # noqa: F811
    rows = klines("XRPUSDT", n=120, scale=6) + klines("BTCUSDT", n=50)
    store.write(KLINES_M5, rows)
    first = rows[0].open_time
    df = binance_extractor.read("klines_m5", ["XRPUSDT"], first, rows[100].open_time, store=store)
    assert isinstance(df, pd.DataFrame)
    assert len(df) == 100
    assert set(df["symbol"]) == {"XRPUSDT"}
    assert df["close"].dtype == pd.ArrowDtype(DEC)
    assert df["open_time"].dtype == pd.ArrowDtype(pa.timestamp("ms", tz="UTC"))
    assert df["close"].iloc[7] == rows[7].close  # 8+ decimals, exact
    assert isinstance(df["close"].iloc[7], Decimal)
    assert df["quote_volume"].iloc[3] == rows[3].quote_volume  # > 10^10
    assert df["open_time"].iloc[0] == pd.Timestamp(first)
    assert list(df["open_time"]) == sorted(df["open_time"])


def test_read_every_symbol_with_iso_strings(store: Sink) -> None:  # noqa: F811
    store.write(KLINES_M5, klines("XRPUSDT", n=30) + klines("BTCUSDT", n=20))
    df = binance_extractor.read("m5", None, store=store)
    assert df.groupby("symbol").size().to_dict() == {"BTCUSDT": 20, "XRPUSDT": 30}
    start = klines("XRPUSDT", n=30)[10].open_time.isoformat()
    part = binance_extractor.read("5m", "XRPUSDT", start, None, store=store)
    assert len(part) == 20


def test_read_funding_and_trades(store: Sink) -> None:  # noqa: F811
    f = funding()
    store.write(FUNDING_RATES, f)
    df = binance_extractor.read("funding_rates", ["XRPUSDT"], store=store)
    assert len(df) == len(f)
    assert df["funding_rate"].iloc[5] == f[5].funding_rate
    assert df["mark_price"].isna().sum() == len([r for r in f if r.mark_price is None])
    t = trades(n=300)
    store.write(TRADES, t)
    tdf = binance_extractor.read("trades", ["XRPETH"], store=store)
    assert len(tdf) == 300  # many trades share a millisecond: none dropped, none repeated
    assert tdf["trade_id"].is_unique


def test_windows_bound_each_batch(store: Sink) -> None:  # noqa: F811
    rows = klines("XRPUSDT", n=250)
    store.write(KLINES_M5, rows)
    batches = list(reader.iter_batches(store, "klines_m5", ["XRPUSDT"], batch_rows=40))
    assert max(len(b.rows) for b in batches) <= 40
    assert sum(len(b.rows) for b in batches) == 250
    keys = [r["open_time"] for b in batches for r in b.rows]
    assert keys == sorted(set(keys))


def test_polars_engine_keeps_decimals_and_utc(store: Sink) -> None:  # noqa: F811
    import polars as pl

    rows = klines("XRPUSDT", n=20, scale=6)
    store.write(KLINES_M5, rows)
    df = binance_extractor.read("klines_m5", "XRPUSDT", store=store, engine="polars")
    assert isinstance(df, pl.DataFrame) and df.height == 20
    assert df.schema["close"] == pl.Decimal(38, 18)
    assert df.schema["open_time"] == pl.Datetime("ms", "UTC")
    assert df["close"].to_list() == [r.close for r in rows]


def test_empty_result_keeps_the_schema(store: Sink) -> None:  # noqa: F811
    df = binance_extractor.read("klines_h1", ["NOPEUSDT"], store=store)
    assert len(df) == 0
    assert df["close"].dtype == pd.ArrowDtype(DEC)


def test_bad_input_is_one_clear_error() -> None:
    with pytest.raises(InputError, match="unknown table"):
        reader.resolve_table("candles")
    with pytest.raises(InputError, match="engine"):
        binance_extractor.read("m5", engine="spark")


def test_a_value_too_precise_for_decimal128_is_refused() -> None:
    row = {c: None for c in reader.arrow_schema("funding_rates").names}
    row.update(symbol="XRPUSDT", funding_time=dt(0), funding_rate=Decimal("0.0000000000000000001"))
    with pytest.raises(InputError, match="decimal"):
        reader.to_arrow("funding_rates", [row])


def test_default_store_is_the_first_configured_database(sqlite_conn_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from binance_extractor.sinks.sqlite import SqliteStore

    with SqliteStore(sqlite_conn_id) as sink:
        sink.write(KLINES_M5, klines("XRPUSDT", n=12))
    monkeypatch.setenv("BINANCE_EXTRACTOR_SINKS", "jsonl,sqlite")
    assert len(binance_extractor.read("m5", "XRPUSDT")) == 12
    with pytest.raises(InputError, match="cannot read from 'jsonl'"):
        reader.open_store("jsonl")
