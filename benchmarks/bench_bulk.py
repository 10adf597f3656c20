"""Benchmark: archive history into MariaDB and PostgreSQL through the columnar bulk path, against raw loads.

    .venv/bin/python benchmarks/bench_bulk.py [--symbols 20] [--months 6] [--processes 2] [--latency 0.04]

What runs, in one process run (the emulator is a separate process serving the archive zips, with ``--latency``
per request; its zips are generated once beforehand, as a real archive serves static files):

1. archive -> MariaDB: ``python -m binance_extractor klines --source archive --sink mysql`` for N symbols x M whole
   past months of m5 (20 x 6 = ~1.05 M candles by default, the issue's sample), into a fresh database: in-process
   (one CLI run) and as ``--processes`` CLI processes at once (the pods' shape), start-up included.
   Then the same in-process run with ``--price mark`` (the mark-price klines' archive files, same columnar path).
2. raw LOAD DATA: the same rows as one CSV, ``LOAD DATA LOCAL INFILE`` into an empty copy of the table: the
   ceiling of any path into that table on this machine.
3. the same two for PostgreSQL (``--sink postgres``; raw ``COPY ... FROM STDIN``).

Prints rows/s of each (and the load average: other jobs on the same cores move every figure), archive/REST
ceiling (9,980 candles/s: the most REST can give inside Binance's 2400 weight/min with 499-candle pages),
archive/raw, and the projected wall time for the full history of 24 symbols x 5 timeframes (~26 M candles) at the
best measured rate, and of ``--contracts`` (400) x 5 timeframes. Targets (issue 15): >= 5x REST (aim 10x);
< 10 minutes; (issue 25) archive path >= 0.7 of raw LOAD DATA / COPY.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_archive import SYMBOLS, month_labels, months_back, prewarm, start_emulator  # noqa: E402

REST_CEILING = 9_980  # candles/s: 2400 weight/min, limit-499 pages at weight 2 (issue 7's measured ceiling)
FULL_HISTORY = 26_000_000  # candles: 24 default symbols x m5..d1 from listing
FULL_FILES = 24 * 5 * 12 * 6  # monthly files of that history: ~6 years per symbol on average, 5 timeframes
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "passwd": ""}
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def mysql_db(action: str, name: str) -> None:
    import MySQLdb

    conn = MySQLdb.connect(**MYSQL, autocommit=True)
    conn.cursor().execute(f"{action} DATABASE {'IF EXISTS ' if action == 'DROP' else ''}`{name}`")
    conn.close()


def pg_db(action: str, name: str) -> None:
    import psycopg

    with psycopg.connect(**PG, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'{action} DATABASE {"IF EXISTS " if action == "DROP" else ""}"{name}"')


def cli_argv(
    sink: str, symbols: list[str], start: datetime, end: datetime, interval: str = "5m", price: str = "trade"
) -> list[str]:
    from binance_extractor.timeutil import iso

    return ["klines", "--interval", interval, "--symbols", ",".join(symbols), "--start", iso(start), "--end", iso(end),
            "--source", "archive", "--sink", sink, "--price", price]  # fmt: skip


def in_process(
    sink: str, symbols: list[str], start: datetime, end: datetime, interval: str = "5m", price: str = "trade"
) -> tuple[int, float]:
    from binance_extractor import cli

    t0 = time.perf_counter()
    results = cli.execute(cli_argv(sink, symbols, start, end, interval, price))
    elapsed = time.perf_counter() - t0
    bad = [r.to_dict() for r in results if r.outcome != "success"]
    if bad:
        raise RuntimeError(f"archive run failed: {bad[0]}")
    return sum(r.rows_written for r in results), elapsed


def processes(sink: str, symbols: list[str], start: datetime, end: datetime, n: int) -> tuple[int, float]:
    """One CLI process per symbol group, all at once (start-up included)."""
    out = Path(tempfile.mkdtemp(prefix="bench-bulk-"))
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "binance_extractor",
                *cli_argv(sink, symbols[i::n], start, end),
                "--xcom-file",
                str(out / f"{i}.json"),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(n)
    ]
    errors = [p.stderr.read().decode()[-400:] if p.wait() and p.stderr else "" for p in procs]
    elapsed = time.perf_counter() - t0
    if any(errors):
        raise RuntimeError(f"archive process failed: {next(e for e in errors if e)}")
    rows = sum(r["rows_written"] for i in range(n) for r in json.loads((out / f"{i}.json").read_text()))
    return rows, elapsed


def sample_csv(archive_url: str, symbols: list[str], labels: list[str]) -> tuple[Path, int]:
    """Every sample row as one header-less CSV in the table's column order (what the bulk loaders read)."""
    import zipfile

    import requests

    from binance_extractor import timeframes
    from binance_extractor.archive_columns import parse_block

    fd, name = tempfile.mkstemp(prefix="bench-bulk-", suffix=".csv")
    rows = 0
    with os.fdopen(fd, "wb") as fh:
        for sym in symbols:
            for label in labels:
                url = f"{archive_url}/data/futures/um/monthly/klines/{sym}/5m/{sym}-5m-{label}.zip"
                with zipfile.ZipFile(io.BytesIO(requests.get(url, timeout=120).content)) as zf:
                    block = parse_block(zf.read(zf.namelist()[0]), sym, timeframes.parse("5m"), 0, 2**62)
                block.write_csv(fh)
                rows += len(block)
    return Path(name), rows


def raw_load_data(db: str, path: Path) -> float:
    import MySQLdb

    conn = MySQLdb.connect(**MYSQL, db=db, local_infile=1)
    cur = conn.cursor()
    cur.execute("SET time_zone = '+00:00'")
    cur.execute("CREATE TABLE raw_copy LIKE klines_m5")
    t0 = time.perf_counter()
    cur.execute(
        f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE raw_copy FIELDS TERMINATED BY ',' LINES TERMINATED BY '\\n'"
    )
    conn.commit()
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def raw_copy(db: str, path: Path) -> float:
    import psycopg

    data = path.read_bytes()
    with psycopg.connect(**PG, dbname=db) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("CREATE TABLE raw_copy (LIKE klines_m5 INCLUDING ALL)")
        conn.commit()
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY raw_copy FROM STDIN (FORMAT csv)") as copy:
            copy.write(data)
        conn.commit()
        return time.perf_counter() - t0


def load() -> str:
    """The 1-minute load average: other jobs on the same cores move every figure here."""
    return f"{os.getloadavg()[0]:.2f}"


def line(name: str, rows: int, secs: float) -> float:
    rate = rows / secs
    print(f"  {name:<44}{rows:>10,} rows {secs:>8.2f} s {rate:>12,.0f} rows/s {rate / REST_CEILING:>6.1f}x REST")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--months", type=int, default=6)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--latency", type=float, default=0.04)
    ap.add_argument("--d1-months", type=int, default=60, help="months of d1 files for the per-file cost")
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--contracts", type=int, default=400, help="contracts of the full-history projection (#25)")
    args = ap.parse_args()
    from binance_extractor.sinks import open_sinks

    symbols = SYMBOLS[: args.symbols]
    start, end = months_back(args.months)
    labels = month_labels(start, end)
    emu, url = start_emulator(args.latency)
    os.environ["BINANCE_FUTURES_BASE_URL"] = url
    os.environ["BINANCE_ARCHIVE_BASE_URL"] = f"{url}/archive"
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    dbs: list[tuple[str, str]] = []
    try:
        print(f"sample: {len(symbols)} symbols x {len(labels)} months of m5 ({labels[0]}..{labels[-1]}), "
              f"emulator latency {args.latency * 1000:.0f} ms, load average {load()}; generating zips...",
              flush=True)  # fmt: skip
        prewarm(f"{url}/archive", symbols, labels, "5m")
        prewarm(f"{url}/archive", symbols, labels, "5m", folder="markPriceKlines")
        d1_start, d1_end = months_back(args.d1_months)
        d1_labels = month_labels(d1_start, d1_end)
        d1_symbols = symbols[:5]  # listed 5+ years ago; the per-file cost does not grow with the sample
        prewarm(f"{url}/archive", d1_symbols, d1_labels, "1d")
        csv_path, sample_rows = sample_csv(f"{url}/archive", symbols, labels)
        stores = [("mysql", "MariaDB", "LOAD DATA LOCAL INFILE", mysql_db, raw_load_data)]
        if not args.skip_postgres:
            stores.append(("postgres", "PostgreSQL", "COPY FROM STDIN", pg_db, raw_copy))
        best, per_file = 0.0, 0.0
        for sink, label, raw_name, make_db, raw in stores:
            names = [f"bx_bench_{uuid.uuid4().hex[:8]}" for _ in range(3)]
            for n in names:
                make_db("CREATE", n)
                dbs.append((sink, n))
            env = "AIRFLOW_CONN_MYSQL_DEFAULT" if sink == "mysql" else "AIRFLOW_CONN_POSTGRES_DEFAULT"
            uri = "mysql://root@127.0.0.1:3306/" if sink == "mysql" else "postgres://postgres@127.0.0.1:5432/"
            print(f"\n{label}:")
            os.environ[env] = uri + names[0]
            in_process(sink, symbols[:1], start, start.replace(day=3))  # warm-up: imports, connection, schema
            rows, secs = in_process(sink, symbols, start, end)
            assert rows == sample_rows, (rows, sample_rows)
            one = line("archive -> bulk, one process", rows, secs)
            # mark-price klines: the same columnar path into mark_klines_m5 (8 columns instead of 12)
            rows, secs = in_process(sink, symbols, start, end, price="mark")
            assert rows == sample_rows, (rows, sample_rows)
            line("archive -> bulk, mark-price klines", rows, secs)
            os.environ[env] = uri + names[1]
            rows, secs = processes(sink, symbols, start, end, args.processes)
            many = line(f"archive -> bulk, {args.processes} processes (start-up incl.)", rows, secs)
            os.environ[env] = uri + names[2]
            for opened in open_sinks([sink]):  # the same schema, then an empty copy of the table
                opened.close()
            raw_secs = raw(names[2], csv_path)
            raw_rate = line(f"raw {raw_name} (same rows, empty table)", sample_rows, raw_secs)
            print(f"  share of raw: one process {one / raw_rate:.2f}, {args.processes} processes {many / raw_rate:.2f}"
                  f"  (load average {load()})")  # fmt: skip
            if sink == "mysql":
                best = max(one, many)
                os.environ[env] = uri + names[0]
                # d1 history: ~30 rows a file, so this is the per-file cost (download, checksum, stage, commit)
                _, d1_secs = in_process(sink, d1_symbols, d1_start, d1_end, "1d")
                per_file = d1_secs / (len(d1_symbols) * len(d1_labels))
                files = f"{len(d1_symbols)} x {len(d1_labels)} d1 monthly files"
                print(f"  per-file cost ({files}): {per_file * 1000:.1f} ms")
        rows_min, files_min = FULL_HISTORY / best / 60, FULL_FILES * per_file / 60
        print(f"\nprojected full history (24 symbols x 5 timeframes, ~{FULL_HISTORY / 1e6:.0f} M candles in "
              f"~{FULL_FILES:,} monthly files) into MariaDB: {rows_min:.1f} min of rows at {best:,.0f} rows/s "
              f"+ {files_min:.1f} min of per-file cost = {rows_min + files_min:.1f} min (goal < 10)")  # fmt: skip
        scale = args.contracts / 24  # each contract as old as the config's 24 on average: an upper bound (#25)
        rows_h, files_h = FULL_HISTORY * scale / best / 3600, FULL_FILES * scale * per_file / 3600
        print(f"projected full history of {args.contracts} contracts x 5 timeframes (upper bound: as old as the 24, "
              f"~{FULL_HISTORY * scale / 1e6:.0f} M candles, ~{FULL_FILES * scale:,.0f} files): {rows_h:.1f} h of rows "
              f"+ {files_h:.1f} h of per-file cost = {rows_h + files_h:.1f} h in one process")  # fmt: skip
        csv_path.unlink()
    finally:
        emu.kill()
        for sink, n in dbs:
            (mysql_db if sink == "mysql" else pg_db)("DROP", n)


if __name__ == "__main__":
    main()
