"""Rows/s of each sink writing klines, beside the raw driver baseline measured in the same run.

    .venv/bin/python benchmarks/bench_sinks.py [--rows 200000] [--mongo-rows 20000] [--sinks sqlite,mysql,mongo]

Sinks write in ``write()`` calls of 5000 rows (what the pipeline sends), each one transaction. Baselines get
the same statement, batch size and commits with parameters prebuilt outside the timer:
- MySQL: plain mysqlclient ``cursor.executemany("INSERT ... ON DUPLICATE KEY UPDATE ...")`` on a fresh table;
- SQLite: plain ``sqlite3`` ``executemany`` of the same upsert;
- Mongo: plain pymongo unordered ``bulk_write`` of the same upserts (SecantusDB started here, ~6k docs/s, so
  fewer rows).
Each round empties both tables, then times "insert" (empty table) and "upsert" (the same rows again, every key
present) for the sink and the baseline, interleaved; the best of ``--rounds`` rounds is printed.
MariaDB must run on 127.0.0.1:3306 (root, empty password); a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
_TMP = Path(tempfile.mkdtemp(prefix="bx-bench-"))
os.environ.setdefault("AIRFLOW_HOME", str(_TMP / "airflow"))
os.environ["BINANCE_EXTRACTOR_DATA_DIR"] = str(_TMP / "data")

from binance_extractor import timeframes  # noqa: E402
from binance_extractor.kinds import Dataset  # noqa: E402
from binance_extractor.models import Kline  # noqa: E402

KLINES_M5 = Dataset.of_table("klines_m5")

BATCH = 5000
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "passwd": ""}


def make_klines(n: int, symbol: str = "BENCHUSDT") -> list[Kline]:
    """Validated candles with 8-decimal prices and quote volumes above 10^10."""
    tf = timeframes.parse("5m")
    t0 = 1_600_000_000_000 - 1_600_000_000_000 % tf.ms
    out = []
    for i in range(n):
        t = t0 + i * tf.ms
        base = Decimal(20_000 + (i * 7919) % 5000) + Decimal(i % 997).scaleb(-8)
        out.append(
            Kline.build(
                symbol=symbol,
                interval="5m",
                open_time=t,
                close_time=t + tf.ms - 1,
                open=base,
                high=base + Decimal("12.5"),
                low=base - Decimal("7.25"),
                close=base + Decimal("1.12345678"),
                volume=Decimal(1000 + i % 300) + Decimal("0.123"),
                quote_volume=Decimal(12_345_678_901 + i) + Decimal("0.12345678"),
                trade_count=1000 + i % 5000,
                taker_buy_base_volume=Decimal("500.061"),
                taker_buy_quote_volume=Decimal("6172839450.5"),
            )
        )
    return out


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def chunks(rows: Sequence[Any]) -> list[Sequence[Any]]:
    return [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]


def measure(
    sink: Any,
    rows: list[Kline],
    raw_write: Callable[[Sequence[Any]], None],
    raw_params: list[Any],
    reset: Callable[[], None],
    rounds: int,
) -> tuple[float, float, float, float]:
    """Best-of-``rounds`` seconds for (sink insert, sink upsert, raw insert, raw upsert), interleaved so that
    load from other processes hits both sides alike. ``reset`` empties both tables before each round."""
    sink.ensure_schema()
    sink_parts, raw_parts = chunks(rows), chunks(raw_params)

    def via_sink() -> None:
        for part in sink_parts:
            sink.write(KLINES_M5, part)

    def via_raw() -> None:
        for part in raw_parts:
            raw_write(part)

    best = [float("inf")] * 4
    for _ in range(rounds):
        reset()
        for i, fn in enumerate((via_sink, via_sink, via_raw, via_raw)):
            best[i] = min(best[i], timed(fn))
    assert sink.count(KLINES_M5) == len(rows)
    return best[0], best[1], best[2], best[3]


def report(name: str, n: int, t: tuple[float, float, float, float]) -> list[tuple[str, int, float, float]]:
    return [(f"{name} insert", n, t[0], t[2]), (f"{name} upsert", n, t[1], t[3])]


# ---- MySQL -----------------------------------------------------------------------------------------
def bench_mysql(rows: list[Kline], rounds: int) -> list[tuple[str, int, float, float]]:
    import MySQLdb

    from binance_extractor.sinks.mysql import INIT_COMMAND, MySqlStore
    from binance_extractor.sinks.schema import kline_spec

    db_sink, db_raw = f"bx_bench_{uuid.uuid4().hex[:8]}", f"bx_bench_{uuid.uuid4().hex[:8]}"
    admin = MySQLdb.connect(**MYSQL, autocommit=True)
    for db in (db_sink, db_raw):
        admin.cursor().execute(f"CREATE DATABASE `{db}`")
    try:
        os.environ["AIRFLOW_CONN_MYSQL_DEFAULT"] = f"mysql://root@127.0.0.1:3306/{db_sink}"
        sink = MySqlStore()
        spec = kline_spec("klines_m5")
        sql, convert = sink._writer(spec)
        conn = MySQLdb.connect(**MYSQL, db=db_raw, init_command=INIT_COMMAND)
        conn.autocommit(False)
        cur = conn.cursor()
        cur.execute(sink._create_table_sql(spec))  # its own table, same DDL
        params = [
            (
                r.symbol,
                r.open_time.replace(tzinfo=None),
                r.close_time.replace(tzinfo=None),
                r.open,
                r.high,
                r.low,
                r.close,
                r.volume,
                r.quote_volume,
                r.trade_count,
                r.taker_buy_base_volume,
                r.taker_buy_quote_volume,
            )
            for r in rows
        ]
        assert [conn.literal(v) for v in params[0]] == [conn.literal(v) for v in convert(rows[0])]  # same SQL

        def raw_write(part: Sequence[Any]) -> None:
            cur.executemany(sql, part)
            conn.commit()

        def reset() -> None:
            for db in (db_sink, db_raw):
                admin.cursor().execute(f"TRUNCATE TABLE `{db}`.klines_m5")

        sink.ensure_schema()
        t = measure(sink, rows, raw_write, params, reset, rounds)
        sink.close()
        conn.close()
    finally:
        for db in (db_sink, db_raw):
            admin.cursor().execute(f"DROP DATABASE IF EXISTS `{db}`")
        admin.close()
    return report("mysql", len(rows), t)


# ---- SQLite ----------------------------------------------------------------------------------------
def bench_sqlite(rows: list[Kline], rounds: int) -> list[tuple[str, int, float, float]]:
    import sqlite3
    from urllib.parse import quote

    from binance_extractor.sinks.schema import kline_spec
    from binance_extractor.sinks.sqlite import SqliteStore

    path, raw_path = _TMP / "sink.sqlite", _TMP / "raw.sqlite"
    os.environ["AIRFLOW_CONN_SQLITE_DEFAULT"] = "sqlite://" + quote(str(path), safe="")
    sink = SqliteStore()
    spec = kline_spec("klines_m5")
    sql, convert = sink._writer(spec)
    conn = sqlite3.connect(raw_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(sink._create_table_sql(spec))
    params = [convert(r) for r in rows]  # TEXT decimals and epoch ms, prebuilt

    def raw_write(part: Sequence[Any]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, part)
        conn.execute("COMMIT")

    def reset() -> None:
        sink.ensure_schema()
        sink._tx(lambda cur: cur.execute("DELETE FROM klines_m5"))
        conn.execute("DELETE FROM klines_m5")

    t = measure(sink, rows, raw_write, params, reset, rounds)
    sink.close()
    conn.close()
    return report("sqlite", len(rows), t)


# ---- Mongo -----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_mongo(rows: list[Kline], rounds: int) -> list[tuple[str, int, float, float]]:
    import pymongo
    from pymongo import UpdateOne

    from binance_extractor.sinks.mongo import MongoStore
    from binance_extractor.sinks.schema import kline_spec

    workdir = _TMP / "mongo"
    (workdir / "data").mkdir(parents=True)
    port = _free_port()
    cmd = [str(ROOT / ".venv-mongo/bin/python"), "-m", "secantus", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--storage-path", str(workdir / "data"), "--log-level", "WARNING"]
    server = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        os.environ["AIRFLOW_CONN_MONGO_DEFAULT"] = f"mongo://127.0.0.1:{port}/bench_sink"
        sink = MongoStore()
        spec = kline_spec("klines_m5")
        docs = [sink._doc(spec, r) for r in rows]
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient("127.0.0.1", port)
        coll = client["bench_raw"]["klines_m5"]
        coll.create_index([("symbol", 1), ("open_time", 1)], unique=True, name="pk")
        ops = [UpdateOne({"symbol": d["symbol"], "open_time": d["open_time"]}, {"$set": d}, upsert=True) for d in docs]

        def raw_write(part: Sequence[Any]) -> None:
            coll.bulk_write(list(part), ordered=False)

        def reset() -> None:
            sink.database()["klines_m5"].delete_many({})
            coll.delete_many({})

        t = measure(sink, rows, raw_write, ops, reset, rounds)
        sink.close()
        client.close()
    finally:
        server.terminate()
        server.wait(10)
    return report("mongo", len(rows), t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--mongo-rows", type=int, default=20_000)
    ap.add_argument("--sinks", default="sqlite,mysql,mongo")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each is reported")
    args = ap.parse_args()
    names = [s.strip() for s in args.sinks.split(",") if s.strip()]
    t0 = time.perf_counter()
    rows = make_klines(max(args.rows, args.mongo_rows if "mongo" in names else 0))
    print(f"built {len(rows)} validated klines in {time.perf_counter() - t0:.1f}s; batches of {BATCH}", flush=True)
    results: list[tuple[str, int, float, float]] = []
    try:
        for name in names:
            if name == "mysql":
                results += bench_mysql(rows[: args.rows], args.rounds)
            elif name == "sqlite":
                results += bench_sqlite(rows[: args.rows], args.rounds)
            elif name == "mongo":
                results += bench_mongo(rows[: args.mongo_rows], args.rounds)
            else:
                raise SystemExit(f"unknown sink {name!r}")
    finally:
        shutil.rmtree(_TMP, ignore_errors=True)
    print(f"\n{'sink / pass':<15} {'rows':>8} {'sink rows/s':>12} {'raw rows/s':>12} {'sink/raw':>9}")
    for label, n, s, r in results:
        print(f"{label:<15} {n:>8} {n / s:>12,.0f} {n / r:>12,.0f} {r / s:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
