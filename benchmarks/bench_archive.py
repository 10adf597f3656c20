"""Benchmark: an m5 backfill into MySQL from the emulator, archive path against REST path, in one run.

    .venv/bin/python benchmarks/bench_archive.py [--symbols 20] [--months 3] [--rest-seconds 60] [--profile]

What runs (the emulator is a separate process, like the real exchange and archive, with 40 ms latency per
request and the standard 2400 weight/min budget):

1. archive: ``cli.execute(["klines", ..., "--source", "archive", "--sink", "mysql"])`` over N whole past months
   for 20 symbols (two rounds of 10, each followed by its raw MySQL round), into a fresh MariaDB database.
   The emulator's zips are generated once beforehand (a real archive serves static files; generating them is
   not what is measured).
2. raw MySQL: the same rows (read back from that table) re-written by plain ``MySQLdb`` ``executemany`` of the
   sink's upsert statement into an empty copy of the table, in 5000-row batches: the ceiling for any path.
   Also the archive source alone (download, verify, parse, validate; no sink) for the REST subset of symbols,
   and the same backfill as ``--processes`` CLI processes at once (the pods' shape: one process per symbol
   group), start-up included, into another fresh database.
3. REST: ``pipeline.run_job`` with ``source="rest"`` into a second fresh database, for exactly one weight window
   (starting at a window boundary, so no leftover budget inflates it): whole-window steady state.

``--profile`` adds the single-thread cost of each stage for one monthly file (download, unzip+csv, validation,
sink write). Prints klines/s of each, archive/REST, archive/raw-MySQL, and the REST budget maximum for the page size.
Targets (issue 7): archive >= 10x REST; archive >= 0.7 x raw MySQL write rate.
"""

from __future__ import annotations

import argparse
import calendar
import io
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYMBOLS = [
    "BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "DOGEUSDT", "ADAUSDT", "AVAXUSDT", "LINKUSDT", "DOTUSDT", "LTCUSDT",
    "BCHUSDT", "TRXUSDT", "ATOMUSDT", "NEARUSDT", "UNIUSDT", "ETCUSDT", "FILUSDT", "APTUSDT", "ARBUSDT", "INJUSDT",
]  # fmt: skip
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "passwd": ""}
WINDOW_S = 60
WEIGHT_LIMIT = 2400


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator(latency: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tests.emulator", "--port", str(port), "--latency", str(latency)]
    cmd += ["--weight-limit", str(WEIGHT_LIMIT), "--window-seconds", str(WINDOW_S)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"emulator exited: {proc.stderr.read().decode() if proc.stderr else ''}") from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("emulator did not start")


def months_back(n: int) -> tuple[datetime, datetime]:
    """[first day of the month n months before this one, first day of this month)."""
    now = datetime.now(UTC)
    end = datetime(now.year, now.month, 1, tzinfo=UTC)
    y, m = end.year, end.month - n
    while m < 1:
        y, m = y - 1, m + 12
    return datetime(y, m, 1, tzinfo=UTC), end


def month_labels(start: datetime, end: datetime) -> list[str]:
    out, d = [], start
    while d < end:
        out.append(d.strftime("%Y-%m"))
        d = (d + timedelta(days=calendar.monthrange(d.year, d.month)[1])).replace(day=1)
    return out


def prewarm(archive_url: str, symbols: list[str], labels: list[str], interval: str, folder: str = "klines") -> None:
    """Ask for every checksum once: the emulator generates and caches each zip."""
    import requests

    session = requests.Session()

    def get(args: tuple[str, str]) -> None:
        sym, label = args
        url = f"{archive_url}/data/futures/um/monthly/{folder}/{sym}/{interval}/{sym}-{interval}-{label}.zip.CHECKSUM"
        session.get(url, timeout=120).raise_for_status()

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(get, [(s, label) for s in symbols for label in labels]))


def create_db() -> str:
    import MySQLdb

    name = f"bx_bench_{uuid.uuid4().hex[:8]}"
    conn = MySQLdb.connect(**MYSQL, autocommit=True)
    conn.cursor().execute(f"CREATE DATABASE `{name}`")
    conn.close()
    return name


def drop_db(name: str) -> None:
    import MySQLdb

    conn = MySQLdb.connect(**MYSQL, autocommit=True)
    conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def use_db(name: str) -> None:
    os.environ["AIRFLOW_CONN_MYSQL_DEFAULT"] = f"mysql://root@127.0.0.1:3306/{name}"


def run_archive(symbols: list[str], start: datetime, end: datetime, interval: str) -> tuple[int, float]:
    from binance_extractor import cli
    from binance_extractor.timeutil import iso

    argv = ["klines", "--interval", interval, "--symbols", ",".join(symbols), "--start", iso(start), "--end"]
    argv += [iso(end), "--source", "archive", "--sink", "mysql"]
    t0 = time.perf_counter()
    results = cli.execute(argv)
    elapsed = time.perf_counter() - t0
    bad = [r for r in results if r.outcome != "success"]
    if bad:
        raise RuntimeError(f"archive run failed: {bad[0].to_dict()}")
    return sum(r.rows_written for r in results), elapsed


def run_archive_processes(
    symbols: list[str], start: datetime, end: datetime, interval: str, processes: int
) -> tuple[int, float]:
    """The deployment's shape: one CLI process per group of symbols (pods per symbol), all at once.

    Each process pays its own start-up (imports, connections): that is timed too.
    """
    import json
    import tempfile

    from binance_extractor.timeutil import iso

    groups = [symbols[i::processes] for i in range(processes)]
    out_dir = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    procs = []
    t0 = time.perf_counter()
    for i, group in enumerate(groups):
        argv = [sys.executable, "-m", "binance_extractor", "klines", "--interval", interval, "--symbols"]
        argv += [",".join(group), "--start", iso(start), "--end", iso(end), "--source", "archive", "--sink", "mysql"]
        argv += ["--xcom-file", str(out_dir / f"{i}.json")]
        procs.append(subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    errors = [p.stderr.read().decode()[-500:] if p.wait() and p.stderr else "" for p in procs]
    elapsed = time.perf_counter() - t0
    if any(errors):
        raise RuntimeError(f"archive process failed: {next(e for e in errors if e)}")
    rows = sum(r["rows_written"] for i in range(processes) for r in json.loads((out_dir / f"{i}.json").read_text()))
    return rows, elapsed


def warm_up(symbol: str, day: datetime) -> None:
    """One tiny run first (into another table), so imports and connections are not timed."""
    from binance_extractor import cli
    from binance_extractor.timeutil import iso

    argv = ["klines", "--interval", "1d", "--symbols", symbol, "--start", iso(day - timedelta(days=2)), "--end"]
    cli.execute([*argv, iso(day), "--source", "archive", "--sink", "mysql"])


def stages(archive_url: str, symbol: str, label: str, interval: str, db: str, table: str) -> None:
    """Single-thread cost of each step for one monthly file: where the archive path spends its time."""
    import csv
    import hashlib
    import zipfile

    import requests

    from binance_extractor import archive
    from binance_extractor.kinds import Dataset
    from binance_extractor.models import Kline
    from binance_extractor.sinks import open_sinks

    url = f"{archive_url}/data/futures/um/monthly/klines/{symbol}/{interval}/{symbol}-{interval}-{label}.zip"
    t = time.perf_counter()
    body = requests.get(url, timeout=60).content
    hashlib.sha256(body).hexdigest()
    t_dl = time.perf_counter() - t
    t = time.perf_counter()
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        text = zf.read(zf.namelist()[0]).decode("ascii")
    raw = [r for r in csv.reader(io.StringIO(text)) if r and r[0].isdigit()]
    t_csv = time.perf_counter() - t
    for r in raw:
        if int(r[0]) > archive.MICROS_THRESHOLD:
            r[0], r[6] = str(int(r[0]) // 1000), str(int(r[6]) // 1000)
    t = time.perf_counter()
    models = [Kline.from_rest(symbol, interval, r) for r in raw]
    t_val = time.perf_counter() - t
    t = time.perf_counter()
    archive.parse_zip(body, symbol, interval, 0, 2**62)
    t_parse = time.perf_counter() - t
    use_db(db)
    sink = open_sinks(["mysql"])[0]
    t = time.perf_counter()
    for i in range(0, len(models), 5000):
        sink.write(Dataset.of_table(table), models[i : i + 5000])
    t_sink = time.perf_counter() - t
    sink.close()
    n = len(models)
    print(f"stages, one monthly file ({n} rows, {len(body) / 1e6:.2f} MB zip), single thread:")
    for name, secs in (
        ("download + sha256", t_dl),
        ("unzip + csv.reader", t_csv),
        ("models.Kline.from_rest", t_val),
        ("archive.parse_zip (all of it)", t_parse),
        ("MySqlStore.write (5000-row batches)", t_sink),
    ):
        print(f"  {name:<36}{secs * 1000:>8.0f} ms {n / secs:>12,.0f} rows/s")


def source_only(
    archive_url: str, symbols: list[str], start: datetime, end: datetime, interval: str
) -> tuple[int, float]:
    """The archive source alone (download, verify, parse, validate; no sink): its capacity without MySQL."""
    from binance_extractor import archive, timeframes
    from binance_extractor.timeutil import dt_to_ms

    tf = timeframes.parse(interval)
    rows, t0 = 0, time.perf_counter()
    for symbol in symbols:
        for batch in archive.iter_klines(None, symbol, tf, dt_to_ms(start), dt_to_ms(end), source="archive"):
            rows += len(batch)
    return rows, time.perf_counter() - t0


def raw_mysql(db: str, table: str, symbols: list[str]) -> tuple[int, float]:
    """Plain MySQLdb executemany of the sink's upsert, same rows, into a copy of the table (new keys: inserts)."""
    import MySQLdb

    from binance_extractor.sinks.mysql import MySqlStore
    from binance_extractor.sinks.schema import spec_for

    conn = MySQLdb.connect(**MYSQL, db=db)
    cur = conn.cursor()
    cur.execute("SET time_zone = '+00:00'")
    cols = ", ".join(f"`{c}`" for c in spec_for(table).column_names)
    marks = ", ".join(["%s"] * len(symbols))
    cur.execute(f"SELECT {cols} FROM `{table}` WHERE symbol IN ({marks}) ORDER BY symbol, open_time", symbols)
    rows = list(cur.fetchall())
    conn.commit()
    raw = f"{table}_raw"
    cur.execute(f"CREATE TABLE IF NOT EXISTS `{raw}` LIKE `{table}`")
    sql = MySqlStore._upsert_sql(MySqlStore.__new__(MySqlStore), spec_for(table)).replace(f"`{table}`", f"`{raw}`", 1)
    t0 = time.perf_counter()
    for i in range(0, len(rows), 5000):
        cur.executemany(sql, rows[i : i + 5000])
        conn.commit()
    elapsed = time.perf_counter() - t0
    conn.close()
    return len(rows), elapsed


def run_rest(symbols: list[str], end: datetime, interval: str, seconds: float, client: object) -> tuple[int, float]:
    """Whole weight windows of REST extraction into MySQL through the pipeline, jobs of 30 days per symbol."""
    from binance_extractor import pipeline, timeframes
    from binance_extractor.kinds import DataKind
    from binance_extractor.sinks import open_sinks

    sinks = open_sinks(["mysql"])
    jobs = [(s, end - timedelta(days=30 * (k + 1)), end - timedelta(days=30 * k)) for k in range(24) for s in symbols]
    # start on a window boundary: the leftover of a half-used window would inflate the rate
    time.sleep(WINDOW_S - time.time() % WINDOW_S + 0.05)
    rows, t0 = 0, time.perf_counter()
    deadline = t0 + seconds
    stop = threading.Event()
    try:
        for symbol, s, e in jobs:
            if time.perf_counter() >= deadline or stop.is_set():
                break
            job = pipeline.Job(DataKind.KLINES, symbol, timeframes.parse(interval), start=s, end=e, source="rest")

            def progress(n: int) -> None:
                if time.perf_counter() >= deadline:
                    stop.set()

            result = pipeline.run_job(job, sinks, client, progress=progress)  # type: ignore[arg-type]
            rows += result.rows_written
    finally:
        elapsed = time.perf_counter() - t0
        for sink in sinks:
            sink.close()
    return rows, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--months", type=int, default=3)
    ap.add_argument("--interval", default="5m")
    ap.add_argument("--latency", type=float, default=0.04)
    ap.add_argument("--rest-seconds", type=float, default=60.0, help="REST measurement (whole windows: 60, 120)")
    ap.add_argument("--rest-symbols", type=int, default=5)
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 2, help="CLI processes for the pod-shaped run")
    ap.add_argument("--profile", action="store_true", help="also time each stage of one file")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    args = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    symbols = SYMBOLS[: args.symbols]
    start, end = months_back(args.months)
    proc, url = start_emulator(args.latency)
    os.environ["BINANCE_FUTURES_BASE_URL"] = url
    os.environ["BINANCE_ARCHIVE_BASE_URL"] = url + "/archive"
    from binance_extractor import timeframes
    from binance_extractor.client import BinanceFuturesClient

    table = timeframes.parse(args.interval).table
    dbs: list[str] = []
    try:
        t0 = time.perf_counter()
        prewarm(url + "/archive", symbols, month_labels(start, end), args.interval)
        print(
            f"emulator {url}: {len(symbols)} x {args.months} monthly zips generated in {time.perf_counter() - t0:.1f}s"
        )

        dbs.append(create_db())
        use_db(dbs[-1])
        warm_up(symbols[0], start)
        # alternate archive and raw rounds over halves of the symbols: the machine's load drifts, and the
        # ratio should compare the two under the same conditions
        a_rows = r_rows = 0
        a_s = r_s = 0.0
        half = (len(symbols) + 1) // 2
        for group in (symbols[:half], symbols[half:]):
            n, secs = run_archive(group, start, end, args.interval)
            print(f"archive: {n} klines in {secs:.1f}s ({n / secs:,.0f}/s)")
            a_rows, a_s = a_rows + n, a_s + secs
            n, secs = raw_mysql(dbs[-1], table, group)
            print(f"raw MySQL executemany: {n} rows in {secs:.1f}s ({n / secs:,.0f}/s)")
            r_rows, r_s = r_rows + n, r_s + secs
        o_rows, o_s = source_only(url + "/archive", symbols[: args.rest_symbols], start, end, args.interval)
        print(f"archive source only: {o_rows} rows in {o_s:.1f}s")
        dbs.append(create_db())
        use_db(dbs[-1])
        p_rows, p_s = run_archive_processes(symbols, start, end, args.interval, args.processes)
        print(f"archive in {args.processes} processes: {p_rows} klines in {p_s:.1f}s")
        if args.profile:
            dbs.append(create_db())
            stages(url + "/archive", symbols[0], month_labels(start, end)[0], args.interval, dbs[-1], table)

        dbs.append(create_db())
        use_db(dbs[-1])
        client = BinanceFuturesClient(base_url=url)
        rest_symbols = symbols[: args.rest_symbols]
        print(f"REST: {len(rest_symbols)} symbols for {args.rest_seconds:.0f}s from the next window boundary ...")
        s_rows, s_s = run_rest(rest_symbols, start, args.interval, args.rest_seconds, client)
        client.close()
    finally:
        proc.terminate()
        proc.wait(10)
        if not args.keep:
            for db in dbs:
                drop_db(db)

    archive_rate, raw_rate, rest_rate, source_rate = a_rows / a_s, r_rows / r_s, s_rows / s_s, o_rows / o_s
    budget_max = WEIGHT_LIMIT / 2 * 499 / WINDOW_S  # limit 499 costs weight 2
    print()
    print(f"{'path':<34}{'klines':>10}{'seconds':>10}{'klines/s':>12}")
    print(f"{'archive -> MySQL (cli, pipeline)':<34}{a_rows:>10}{a_s:>10.1f}{archive_rate:>12,.0f}")
    print(f"{'raw MySQLdb executemany (upsert)':<34}{r_rows:>10}{r_s:>10.1f}{raw_rate:>12,.0f}")
    procs_label = f"archive -> MySQL, {args.processes} processes"
    print(f"{procs_label:<34}{p_rows:>10}{p_s:>10.1f}{p_rows / p_s:>12,.0f}")
    print(f"{'archive source only (no sink)':<34}{o_rows:>10}{o_s:>10.1f}{source_rate:>12,.0f}")
    print(f"{'REST -> MySQL (pipeline)':<34}{s_rows:>10}{s_s:>10.1f}{rest_rate:>12,.0f}")
    print(f"{'REST budget maximum (limit 499)':<34}{'':>10}{'':>10}{budget_max:>12,.0f}")
    print()
    print(f"archive / REST      = {archive_rate / rest_rate:6.2f}x   (target >= 10)")
    print(f"archive / REST max  = {archive_rate / budget_max:6.2f}x   (against the best REST can ever do)")
    print(f"archive / raw MySQL = {archive_rate / raw_rate:6.2f}    (target >= 0.7)")
    print(f"  ... {args.processes} processes = {p_rows / p_s / raw_rate:6.2f}    (one CLI process per symbol group)")
    print(f"archive {args.processes} processes / REST = {p_rows / p_s / rest_rate:6.2f}x")
    print(f"REST / budget max   = {rest_rate / budget_max:6.2f}")


if __name__ == "__main__":
    main()
