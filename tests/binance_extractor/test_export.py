"""``export``: Parquet decimal128 / CSV exact text, aware UTC, per symbol and month, streamed, all-or-nothing."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from binance_extractor import export, timeframes
from binance_extractor.kinds import Dataset
from binance_extractor.models import Kline
from binance_extractor.sinks.base import Sink
from tests.binance_extractor.sinks.conftest import klines
from tests.binance_extractor.store_helpers import store, store_kind  # noqa: F401

KLINES_H1 = Dataset.of_table("klines_h1")
KLINES_M5 = Dataset.of_table("klines_m5")

ROOT = Path(__file__).resolve().parents[2]


def month_crossing(symbol: str, n: int) -> list[Kline]:
    """h1 candles around the end of a month (Jan -> Feb 2024)."""
    tf = timeframes.parse("1h")
    start = 1706745600000 - 5 * tf.ms  # 2024-02-01T00:00Z minus 5 hours
    out = []
    for i in range(n):
        t = start + i * tf.ms
        price = Decimal("0.00012345") + Decimal(i) / Decimal(10**8)
        out.append(
            Kline.build(
                symbol=symbol,
                interval="1h",
                open_time=t,
                close_time=tf.close_ms(t),
                open=price,
                high=price + Decimal("0.00000010"),
                low=price,
                close=price,
                volume=Decimal("123456789012.123456789"),
                quote_volume=Decimal("15.2"),
                trade_count=i,
                taker_buy_base_volume=Decimal("1"),
                taker_buy_quote_volume=Decimal("0.1"),
            )
        )
    return out


def test_parquet_is_decimal128_and_utc_in_bounded_row_groups(store: Sink, tmp_path: Path) -> None:  # noqa: F811
    rows = klines("XRPUSDT", n=230, scale=6)
    store.write(KLINES_M5, rows)
    out = tmp_path / "k.parquet"
    [res] = export.export(store, "klines_m5", out, symbols=["XRPUSDT"], batch_rows=50)
    assert res.rows == 230
    meta = pq.ParquetFile(out)
    assert meta.metadata.num_row_groups == 5  # one per bounded read window
    assert max(meta.metadata.row_group(i).num_rows for i in range(5)) <= 50
    table = pq.read_table(out)
    assert table.schema.field("close").type == pa.decimal128(38, 18)
    assert table.schema.field("open_time").type == pa.timestamp("ms", tz="UTC")
    assert table.column("close").to_pylist() == [r.close for r in rows]
    assert table.column("open_time").to_pylist() == [r.open_time for r in rows]
    assert not list(tmp_path.glob("*.part"))


def test_csv_keeps_the_exact_text(store: Sink, tmp_path: Path) -> None:  # noqa: F811
    rows = month_crossing("XRPUSDT", 8)
    store.write(KLINES_H1, rows)
    out = tmp_path / "k.csv"
    export.export(store, "h1", out, fmt="csv", start=rows[2].open_time, end=rows[6].open_time)
    lines = list(csv.DictReader(out.open()))
    assert [line["open_time"] for line in lines] == [
        "2024-01-31T21:00:00.000Z",
        "2024-01-31T22:00:00.000Z",
        "2024-01-31T23:00:00.000Z",
        "2024-02-01T00:00:00.000Z",
    ]
    assert Decimal(lines[0]["close"]) == rows[2].close
    assert Decimal(lines[0]["volume"]) == Decimal("123456789012.123456789")
    assert "e" not in lines[0]["close"].lower()


def test_split_per_symbol_and_month(store: Sink, tmp_path: Path) -> None:  # noqa: F811
    store.write(KLINES_H1, month_crossing("XRPUSDT", 10) + month_crossing("ETHUSDT", 3))
    results = export.export(store, "klines_h1", tmp_path / "out", split=True)
    files = {str(Path(r.path).relative_to(tmp_path / "out")): r.rows for r in results}
    assert files == {
        "klines_h1/ETHUSDT/2024-01.parquet": 3,
        "klines_h1/XRPUSDT/2024-01.parquet": 5,
        "klines_h1/XRPUSDT/2024-02.parquet": 5,
    }
    feb = pq.read_table(tmp_path / "out/klines_h1/XRPUSDT/2024-02.parquet")
    assert feb.column("open_time").to_pylist()[0].isoformat() == "2024-02-01T00:00:00+00:00"


def test_a_failed_export_leaves_no_file(tmp_path: Path, sqlite_conn_id: str) -> None:
    from binance_extractor.sinks.sqlite import SqliteStore

    sink = SqliteStore(sqlite_conn_id)
    sink.write(KLINES_M5, klines("XRPUSDT", n=120))

    class Broken(SqliteStore):
        calls = 0

        def read(self, *a, **kw):  # type: ignore[no-untyped-def]
            Broken.calls += 1
            if Broken.calls > 1:
                raise RuntimeError("connection lost")
            return super().read(*a, **kw)

    broken = Broken(sqlite_conn_id)
    with pytest.raises(RuntimeError):
        export.export(broken, "klines_m5", tmp_path / "k.parquet", batch_rows=50)
    assert list(tmp_path.glob("k.parquet*")) == []  # neither the file nor its .part
    sink.close()
    broken.close()


def test_cli_exports_from_every_store(store: Sink, store_kind: str, tmp_path: Path) -> None:  # noqa: F811
    rows = month_crossing("XRPUSDT", 10)
    store.write(KLINES_H1, rows)
    res = _cli(["--table", "1h", "--sink", store_kind, "--output", str(tmp_path / "out"), "--split"], {})
    assert res.returncode == 0, res.stderr
    jan = pq.read_table(tmp_path / "out/klines_h1/XRPUSDT/2024-01.parquet")
    feb = pq.read_table(tmp_path / "out/klines_h1/XRPUSDT/2024-02.parquet")
    assert jan.column("close").to_pylist() + feb.column("close").to_pylist() == [r.close for r in rows]
    assert feb.schema.field("volume").type == pa.decimal128(38, 18)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "binance_extractor", "export", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        check=False,
    )


def test_cli_export_and_bad_input(tmp_path: Path, sqlite_conn_id: str) -> None:
    from binance_extractor.sinks.sqlite import SqliteStore

    with SqliteStore(sqlite_conn_id) as sink:
        sink.write(KLINES_M5, klines("XRPUSDT", n=40))
    env = {"AIRFLOW_CONN_SQLITE_DEFAULT": os.environ["AIRFLOW_CONN_SQLITE_DEFAULT"], "BINANCE_LOG_FORMAT": "text"}
    out = tmp_path / "x.csv"
    ok = _cli(
        ["--table", "klines_m5", "--symbols", "XRPUSDT", "--format", "csv", "--output", str(out), "--sink", "sqlite"],
        env,
    )
    assert ok.returncode == 0, ok.stderr
    assert len(out.read_text().splitlines()) == 41
    for bad, msg in [
        (["--table", "candles"], "unknown table"),
        (["--table", "m5", "--start", "2024-13-01"], "malformed date"),
        (["--table", "m5", "--start", "2024-02-01", "--end", "2024-01-01"], "not after"),
        (["--table", "m5", "--format", "xlsx"], "invalid choice"),
        (["--table", "m5", "--sink", "jsonl"], "cannot export"),
    ]:
        res = _cli([*bad, "--output", str(tmp_path / "bad.parquet")], env)
        assert res.returncode == 2, res.stderr
        assert msg in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "bad.parquet").exists()
