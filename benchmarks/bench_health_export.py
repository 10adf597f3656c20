"""Data-health reads and exports on MySQL, each beside a baseline measured in the same run.

    .venv/bin/python benchmarks/bench_health_export.py [--rows 400000] [--symbols 4]

- **Health**: ``health.table_health`` (every symbol: edges, count, 1-day window detection, ledger, runs) on a
  small table and on a table ``--rows`` large, against the query a naive page would run (one full scan:
  ``SELECT symbol, COUNT(*), MIN(open_time), MAX(open_time), SUM(close > 0) ... GROUP BY symbol``) on the large
  table. The ratio shows how far indexed reads stay from a scan, and whether they grow with the table.
- **Export**: ``export`` to Parquet and CSV against the baseline of reading the same rows through the sink
  alone (``Sink.read`` window by window, nothing written): export overhead = export time / read time. Peak
  memory (tracemalloc) of a Parquet export of the whole table against the size of the rows it would take to
  hold them all (measured on one window) shows the bound.
MariaDB must run on 127.0.0.1:3306 (root, empty password); a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
_TMP = Path(tempfile.mkdtemp(prefix="bx-bench-"))
os.environ.setdefault("AIRFLOW_HOME", str(_TMP / "airflow"))
os.environ["BINANCE_EXTRACTOR_DATA_DIR"] = str(_TMP / "data")

from bench_sinks import MYSQL, make_klines  # noqa: E402

from binance_extractor import export, health, reader, timeframes  # noqa: E402
from binance_extractor.kinds import Dataset  # noqa: E402
from binance_extractor.timeutil import dt_to_ms  # noqa: E402

KLINES_M5 = Dataset.of_table("klines_m5")


def best(fn, rounds: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def fill(sink, rows_per_symbol: int, symbols: int) -> int:  # type: ignore[no-untyped-def]
    base = make_klines(rows_per_symbol)
    total = 0
    for s in range(symbols):
        rows = [r.model_copy(update={"symbol": f"BENCH{s}USDT"}) for r in base]
        for i in range(0, len(rows), 5000):
            total += sink.write(KLINES_M5, rows[i : i + 5000])
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=400_000, help="rows of the large table (all symbols)")
    ap.add_argument("--symbols", type=int, default=4)
    args = ap.parse_args()
    import MySQLdb

    from binance_extractor.sinks.mysql import MySqlStore

    small_db, big_db = f"bx_bench_{uuid.uuid4().hex[:8]}", f"bx_bench_{uuid.uuid4().hex[:8]}"
    admin = MySQLdb.connect(**MYSQL, autocommit=True)
    for db in (small_db, big_db):
        admin.cursor().execute(f"CREATE DATABASE `{db}`")
    try:
        per_symbol = args.rows // args.symbols
        sinks = {}
        for name, db, n in (("small", small_db, per_symbol // 10), ("large", big_db, per_symbol)):
            os.environ["AIRFLOW_CONN_MYSQL_DEFAULT"] = f"mysql://root@127.0.0.1:3306/{db}"
            sink = MySqlStore()
            sink.ensure_schema()
            sink._connection()  # bind this database now
            total = fill(sink, n, args.symbols)
            sinks[name] = (sink, total)
            print(f"{name} table: {total:,} rows ({args.symbols} symbols)", flush=True)

        big, big_rows = sinks["large"]
        small, small_rows = sinks["small"]
        tf = timeframes.parse("5m")
        now_big = dt_to_ms(big.last_time(KLINES_M5, "BENCH0USDT")) + tf.ms + 1
        now_small = dt_to_ms(small.last_time(KLINES_M5, "BENCH0USDT")) + tf.ms + 1
        t_small = best(lambda: health.table_health(small, "klines_m5", window_days=1, now_ms=now_small))
        t_big = best(lambda: health.table_health(big, "klines_m5", window_days=1, now_ms=now_big))
        scan_sql = (
            "SELECT symbol, COUNT(*), MIN(open_time), MAX(open_time), SUM(close > 0) FROM klines_m5 GROUP BY symbol"
        )
        t_scan = best(lambda: big.query(scan_sql))
        print("\nHealth of every symbol (1-day window), best of 3")
        print("| read | table rows | seconds |")
        print("|---|---|---|")
        print(f"| health, small table | {small_rows:,} | {t_small:.4f} |")
        print(f"| health, large table | {big_rows:,} | {t_big:.4f} |")
        print(f"| baseline: one full scan (naive page) | {big_rows:,} | {t_scan:.4f} |")
        print(f"large / small table: {t_big / t_small:.2f}x for {big_rows / small_rows:.0f}x the rows")
        print(f"health / full scan on the large table: {t_big / t_scan:.3f}")

        out = _TMP / "export"
        out.mkdir()

        def read_only() -> int:
            return sum(len(b.rows) for b in reader.iter_batches(big, "klines_m5"))

        t_read = best(read_only, 1)
        t_pq = best(lambda: export.export(big, "klines_m5", out / "k.parquet"), 1)
        t_csv = best(lambda: export.export(big, "klines_m5", out / "k.csv", fmt="csv"), 1)
        print("\nExport of the large table")
        print("| path | rows/s | vs read alone |")
        print("|---|---|---|")
        print(f"| baseline: Sink.read window by window | {big_rows / t_read:,.0f} | 1.00 |")
        print(f"| export --format parquet | {big_rows / t_pq:,.0f} | {t_read / t_pq:.2f} |")
        print(f"| export --format csv | {big_rows / t_csv:,.0f} | {t_read / t_csv:.2f} |")
        print(f"parquet file: {(out / 'k.parquet').stat().st_size / 1e6:.1f} MB")

        tracemalloc.start()
        next(iter(reader.iter_batches(big, "klines_m5")))
        one_window = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        tracemalloc.start()
        export.export(big, "klines_m5", out / "k2.parquet")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        windows = -(-big_rows // reader.DEFAULT_BATCH_ROWS)
        print(
            f"peak memory of the whole export: {peak / 1e6:.0f} MB; one read window: {one_window / 1e6:.0f} MB; "
            f"all {windows} windows at once would be ~{one_window * windows / 1e6:.0f} MB"
        )
        for sink, _ in sinks.values():
            sink.close()
    finally:
        for db in (small_db, big_db):
            admin.cursor().execute(f"DROP DATABASE IF EXISTS `{db}`")
        admin.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
