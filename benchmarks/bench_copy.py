"""Benchmark: ``copy`` from the embedded SQLite store into MariaDB and PostgreSQL, against a raw bulk load.

    .venv/bin/python benchmarks/bench_copy.py [--symbols 5] [--candles 40000] [--agg-trades 50000]

What runs, in one process run:

1. a SQLite source file with N symbols x M m1 candles (varied decimal places) and K aggregate trades;
2. ``store_copy.copy_stores`` (what ``python -m binance_extractor copy`` runs) of ``klines_m1`` and ``agg_trades``
   into a fresh MariaDB database: reading SQLite, validating, bulk-loading (klines: ``write_block`` = LOAD DATA
   into a staging table + one upsert; agg_trades: the models and ``write``);
3. baselines, measured in the same run: the same rows as one CSV (written beforehand, not timed), loaded by a raw
   ``LOAD DATA LOCAL INFILE`` into an empty copy of the table: the ceiling of any path into that table here; and
   the target's bulk path alone (``write_block`` / ``write`` of the same rows, prepared beforehand, into another
   fresh database): what the copy would do if reading and checking the source cost nothing;
4. the same for PostgreSQL (``write_block`` = COPY into a staging table + one upsert; baseline raw ``COPY``).

Prints rows/s of each and the copy's share of the raw load and of the bulk path. The copy does more than the raw
load by design: it reads the source, checks every row, and upserts (a re-run changes nothing), where the raw load
appends to an empty table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from binance_extractor.kinds import Dataset

AGG_TRADES = Dataset.of_table("agg_trades")
KLINES_M1 = Dataset.of_table("klines_m1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "passwd": ""}
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT", "DOGEUSDT", "LTCUSDT")
START_MS = 1_704_067_200_000  # 2024-01-01T00:00Z


def fill_source(path: Path, symbols: int, candles: int, agg: int) -> Any:
    """A SQLite store with ``symbols`` x ``candles`` m1 candles and ``agg`` aggregate trades."""
    import pyarrow as pa

    from binance_extractor import timeframes
    from binance_extractor.archive_columns import KLINE_ORDER, KlineBlock
    from binance_extractor.models import AggTrade
    from binance_extractor.sinks.sqlite import SqliteStore

    os.environ["AIRFLOW_CONN_BENCH_SOURCE"] = "sqlite://" + quote(str(path), safe="")
    source = SqliteStore("bench_source")
    tf = timeframes.parse("1m")
    for s, symbol in enumerate(SYMBOLS[:symbols]):
        opens = [START_MS + i * tf.ms for i in range(candles)]
        price = [f"{100 + s + (i % 977) / 100:.2f}" for i in range(candles)]  # 2 places, as the exchange sends
        volume = [f"{(i % 5000) / 1000:.3f}" for i in range(candles)]
        quote_vol = [f"{Decimal(v) * Decimal(p)}" for v, p in zip(volume, price, strict=True)]
        cols: dict[str, Any] = {
            "open_time": pa.array(opens, pa.int64()),
            "close_time": pa.array([t + tf.ms - 1 for t in opens], pa.int64()),
            "open": price, "high": price, "low": price, "close": price,
            "volume": volume, "quote_volume": quote_vol,
            "trade_count": pa.array([i % 300 for i in range(candles)], pa.int64()),
            "taker_buy_base_volume": volume, "taker_buy_quote_volume": ["0"] * candles,
        }  # fmt: skip
        block = KlineBlock(symbol, tf, pa.table({n: cols[n] for n in KLINE_ORDER}))
        for i in range(0, candles, 50_000):
            source.write_block(KLINES_M1, block.slice(i, 50_000))
    trades = [
        AggTrade.build(
            symbol="BTCUSDT", agg_trade_id=1_000_000 + i, price=f"{42000 + i % 1000 / 10:.1f}",
            quantity=f"{(i % 900 + 1) / 1000:.3f}", first_trade_id=5_000_000 + 2 * i,
            last_trade_id=5_000_001 + 2 * i, time=START_MS + i * 7, is_buyer_maker=i % 2 == 0,
        )
        for i in range(agg)
    ]  # fmt: skip
    for i in range(0, agg, 5000):
        source.write(AGG_TRADES, trades[i : i + 5000])
    return source


def csv_of(source: Any, table: str, path: Path, bools: tuple[str, str]) -> int:
    """Every row of ``table`` as header-less CSV in column order (what LOAD DATA / COPY read); not timed."""
    from binance_extractor import reader
    from binance_extractor.sinks.schema import spec_for

    spec = spec_for(table)
    rows = 0
    with path.open("w", encoding="ascii") as fh:
        for batch in reader.iter_batches(source, table):
            for r in batch.rows:
                out = []
                for c in spec.columns:
                    v = r[c.name]
                    if c.type == "time":
                        out.append(v.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3])
                    elif c.type == "dec":
                        out.append(format(v, "f"))
                    elif c.type == "bool":
                        out.append(bools[0] if v else bools[1])
                    else:
                        out.append(str(v))
                fh.write(",".join(out) + "\n")
                rows += 1
    return rows


def raw_load_data(db: str, table: str, path: Path) -> float:
    import MySQLdb

    conn = MySQLdb.connect(**MYSQL, db=db, local_infile=1)
    cur = conn.cursor()
    cur.execute("SET time_zone = '+00:00'")
    cur.execute(f"CREATE TABLE raw_{table} LIKE {table}")
    t0 = time.perf_counter()
    cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE raw_{table} FIELDS TERMINATED BY ','")
    conn.commit()
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def raw_copy(db: str, table: str, path: Path) -> float:
    import psycopg

    data = path.read_bytes()
    with psycopg.connect(**PG, dbname=db) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(f"CREATE TABLE raw_{table} (LIKE {table} INCLUDING ALL)")
        conn.commit()
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY raw_{table} FROM STDIN (FORMAT csv)") as copy:
            copy.write(data)
        conn.commit()
        return time.perf_counter() - t0


def database(kind: str, action: str, name: str) -> None:
    if kind == "mysql":
        import MySQLdb

        conn = MySQLdb.connect(**MYSQL, autocommit=True)
        conn.cursor().execute(f"{action} DATABASE {'IF EXISTS ' if action == 'DROP' else ''}`{name}`")
        conn.close()
    else:
        import psycopg

        with psycopg.connect(**PG, dbname="postgres", autocommit=True) as conn:
            extra = "IF EXISTS " if action == "DROP" else ""
            conn.execute(f'{action} DATABASE {extra}"{name}"{" WITH (FORCE)" if action == "DROP" else ""}')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=5)
    ap.add_argument("--candles", type=int, default=40_000, help="m1 candles per symbol")
    ap.add_argument("--agg-trades", type=int, default=50_000)
    ap.add_argument("--skip-postgres", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    from binance_extractor import reader, store_copy, store_rows
    from binance_extractor.sinks import open_sink

    work = Path(tempfile.mkdtemp(prefix="bench-copy-"))
    print(f"source: SQLite, {args.symbols} symbols x {args.candles:,} m1 candles, {args.agg_trades:,} agg trades")
    source = fill_source(work / "source.sqlite", args.symbols, args.candles, args.agg_trades)
    targets = [("mysql", "MariaDB", "LOAD DATA LOCAL INFILE", raw_load_data, ("1", "0"))]
    if not args.skip_postgres:
        targets.append(("postgres", "PostgreSQL", "COPY FROM STDIN", raw_copy, ("t", "f")))
    print("\n| target | table | rows | copy rows/s | raw load rows/s | bulk path alone rows/s | copy / raw | "
          "copy / bulk path |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    try:
        for kind, label, _raw_name, raw, bools in targets:
            dbs = [f"bx_bench_{uuid.uuid4().hex[:8]}" for _ in range(2)]
            for db in dbs:
                database(kind, "CREATE", db)
            try:
                uri = "mysql://root@127.0.0.1:3306/" if kind == "mysql" else "postgres://postgres@127.0.0.1:5432/"
                opened: list[Any] = []
                for name, db in zip(("copy", "bulk"), dbs, strict=True):
                    os.environ[f"AIRFLOW_CONN_BENCH_{name.upper()}"] = uri + db
                    opened.append(open_sink(kind, f"bench_{name}"))
                    opened[-1].ensure_schema()
                target, bulk = opened
                for table in ("klines_m1", "agg_trades"):
                    t0 = time.perf_counter()
                    [result] = store_copy.copy_stores(source, target, [table])
                    secs = time.perf_counter() - t0
                    assert result.written == result.rows > 0, result
                    prepared = [
                        p
                        for b in reader.iter_batches(source, table)
                        for p in store_rows.prepare(Dataset.of_table(table), b.rows, trusted=True)
                    ]
                    t0 = time.perf_counter()
                    assert store_rows.write(bulk, Dataset.of_table(table), prepared) == result.rows
                    bulk_secs = time.perf_counter() - t0
                    path = work / f"{table}.csv"
                    rows = csv_of(source, table, path, bools)
                    assert rows == result.rows
                    raw_secs = raw(dbs[0], table, path)
                    copy_rate, raw_rate, bulk_rate = rows / secs, rows / raw_secs, rows / bulk_secs
                    print(f"| {label} | {table} | {rows:,} | {copy_rate:,.0f} | {raw_rate:,.0f} | {bulk_rate:,.0f} | "
                          f"**{copy_rate / raw_rate:.2f}** | {copy_rate / bulk_rate:.2f} |", flush=True)  # fmt: skip
                for s in opened:
                    s.close()
            finally:
                for db in dbs:
                    database(kind, "DROP", db)
    finally:
        source.close()


if __name__ == "__main__":
    main()
