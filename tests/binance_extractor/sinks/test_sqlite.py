"""SQLite-specific behaviour: the embedded default file, locks, and storage formats."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from binance_extractor import config
from binance_extractor.errors import SinkError
from binance_extractor.kinds import Dataset
from binance_extractor.models import Kline
from binance_extractor.sinks.sqlite import SqliteStore, default_path
from tests.binance_extractor.sinks.conftest import klines

KLINES_M5 = Dataset.of_table("klines_m5")


def test_embedded_default_without_any_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SQLITE_DEFAULT", raising=False)
    monkeypatch.setenv("BINANCE_EXTRACTOR_DATA_DIR", str(tmp_path / "data"))
    assert default_path() == config.data_dir() / "binance.sqlite"
    sink = SqliteStore()
    rows = klines(n=30)
    assert sink.write(KLINES_M5, rows) == 30
    sink.close()
    assert (tmp_path / "data" / "binance.sqlite").is_file()
    with sqlite3.connect(tmp_path / "data" / "binance.sqlite") as raw:
        assert raw.execute("SELECT COUNT(*) FROM klines_m5").fetchone()[0] == 30
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # decimals are the exchange's exact text, times epoch milliseconds
        close, open_ms = raw.execute("SELECT close, open_time FROM klines_m5 ORDER BY open_time LIMIT 1").fetchone()
        assert close == str(rows[0].close) and open_ms == int(rows[0].open_time.timestamp() * 1000)


def test_configured_connection_wins(sqlite_conn_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_EXTRACTOR_DATA_DIR", str(tmp_path / "unused"))
    sink = SqliteStore(sqlite_conn_id)
    sink.write(KLINES_M5, klines(n=3))
    sink.close()
    assert (tmp_path / "sink.sqlite").is_file() and not (tmp_path / "unused").exists()


def test_undefined_connection_id() -> None:
    with pytest.raises(SinkError, match="connection id 'nope' is not defined"):
        SqliteStore("nope").ensure_schema()


def test_locked_database_retries_then_fails_then_rerun_completes(sqlite_conn_id: str, tmp_path: Path) -> None:
    sink = SqliteStore(sqlite_conn_id, retry_attempts=2, busy_timeout_ms=100, retry_max_wait=0.1)
    rows = klines(n=100)
    sink.write(KLINES_M5, rows[:50])
    holder = sqlite3.connect(tmp_path / "sink.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock for too long
    with pytest.raises(SinkError, match="database is locked") as err:
        sink.write(KLINES_M5, rows)
    assert str(tmp_path / "sink.sqlite") in str(err.value)
    holder.execute("ROLLBACK")
    holder.close()
    assert sink.count(KLINES_M5) == 50
    assert sink.write(KLINES_M5, rows) == 100
    assert [Kline(**r) for r in sink.read(KLINES_M5, "XRPUSDT")] == rows


def test_writer_thread_can_use_a_sink_opened_elsewhere(sqlite_conn_id: str) -> None:
    import threading

    sink = SqliteStore(sqlite_conn_id)
    sink.ensure_schema()  # opened on this thread, written from another (as the pipeline's writer does)
    t = threading.Thread(target=sink.write, args=(KLINES_M5, klines(n=10)))
    t.start()
    t.join()
    assert sink.count(KLINES_M5) == 10


def test_write_and_the_bulk_path_store_the_same_decimal_text(sqlite_conn_id: str, tmp_path: Path) -> None:
    """A zero or tiny value with many places ("0.00000000") is one Decimal but had two texts: ``write`` stored
    ``str(Decimal)`` ("0E-8") and ``write_block`` the exchange's plain digits, so the table's bytes depended on
    the path that wrote it and no restore could reproduce them. Both now store the plain digits."""
    import pyarrow as pa

    from binance_extractor import timeframes
    from binance_extractor.archive_columns import KLINE_ORDER, KlineBlock

    tf = timeframes.parse("5m")
    t0, t1 = 1_700_000_100_000, 1_700_000_400_000
    texts = {"open": "0.00000010", "high": "0.00000012", "low": "0.00000009", "close": "0.00000011"}
    texts |= {
        "volume": "0.00000000",
        "quote_volume": "0E-8",
        "taker_buy_base_volume": "0",
        "taker_buy_quote_volume": "0.0",
    }
    model = Kline.build(
        symbol="XRPUSDT", interval="5m", open_time=t0, close_time=tf.close_ms(t0), trade_count=0, **texts
    )
    plain = {k: format(Decimal(v), "f") for k, v in texts.items()}
    block = KlineBlock(
        "ETHUSDT",
        tf,
        pa.table(
            {
                name: pa.array(
                    [t1 if name == "open_time" else tf.close_ms(t1) if name == "close_time" else 0]
                    if name in ("open_time", "close_time", "trade_count")
                    else [plain[name]],
                    pa.int64() if name in ("open_time", "close_time", "trade_count") else pa.string(),
                )
                for name in KLINE_ORDER
            }
        ),
    )
    with SqliteStore(sqlite_conn_id) as sink:
        sink.write(KLINES_M5, [model])
        sink.write_block(KLINES_M5, block)
    cols = ", ".join(plain)
    with sqlite3.connect(tmp_path / "sink.sqlite") as raw:
        rest, bulk = raw.execute(f"SELECT {cols} FROM klines_m5 ORDER BY symbol DESC").fetchall()
    assert rest == bulk == tuple(plain.values())
    assert dict(zip(plain, rest, strict=True))["quote_volume"] == "0.00000000"  # sent as 0E-8
