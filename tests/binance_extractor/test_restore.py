"""``import`` restores what ``export`` wrote, byte for byte, on SQLite, MariaDB and PostgreSQL; twice changes
nothing; a missing, foreign or corrupt file is one line, exit 2, and nothing written."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from binance_extractor import export, restore
from binance_extractor.cli import main
from binance_extractor.errors import InputError
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import Store
from tests.binance_extractor.sinks.conftest import new_sink
from tests.binance_extractor.store_dump import SQL_KINDS, TABLES, dump, fill, second_store  # noqa: F401

FUNDING_RATES = Dataset.of_table("funding_rates")
KLINES_H1 = Dataset.of_table("klines_h1")
KLINES_M5 = Dataset.of_table("klines_m5")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=SQL_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def filled(kind: str, request: pytest.FixtureRequest) -> Store:
    store: Store = new_sink(kind, request.getfixturevalue(f"{kind}_conn_id"), retry_attempts=2)  # type: ignore[assignment]
    store.ensure_schema()
    fill(store)
    request.addfinalizer(store.close)
    return store


def export_all(store: Store, out: Path, fmt: str) -> None:
    """klines_m5 as a --split tree, every other table as one file."""
    for table in TABLES:
        split = table == "klines_m5"
        export.export(store, table, out if split else out / f"{table}.{fmt}", fmt=fmt, split=split, batch_rows=100)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_then_import_gives_the_same_bytes_and_twice_changes_nothing(
    filled: Store,
    kind: str,
    fmt: str,
    tmp_path: Path,
    second_store: Callable[[str], Store],  # noqa: F811
) -> None:
    before = {t: dump(filled, t) for t in TABLES}
    assert all(before.values())
    export_all(filled, tmp_path / "out", fmt)
    target = second_store(kind)

    def restore_all(batch_rows: int) -> list[restore.RestoreResult]:
        if fmt == "parquet":  # each file names its table
            return restore.restore(target, tmp_path / "out", batch_rows=batch_rows)
        out = restore.restore(target, tmp_path / "out" / "klines_m5", batch_rows=batch_rows)  # the --split tree
        for table in TABLES[1:]:  # a single CSV file does not say which table it holds
            out += restore.restore(target, tmp_path / "out" / f"{table}.csv", table, batch_rows=batch_rows)
        return out

    first = restore_all(70)
    assert {t: dump(target, t) for t in TABLES} == before
    assert sum(r.rows for r in first) == sum(len(v) for v in before.values())
    again = restore_all(1000)
    assert {t: dump(target, t) for t in TABLES} == before
    assert sorted(r.rows for r in again) == sorted(r.rows for r in first)


def test_parquet_keeps_each_values_places(filled: Store, kind: str, tmp_path: Path) -> None:
    [res] = export.export(filled, "klines_h1", tmp_path / "h1.parquet")
    data = pq.read_table(res.path)
    assert data.schema.metadata[export.TABLE_KEY] == b"klines_h1"
    fixed = kind == "mysql"  # DECIMAL(38,18) keeps 18 places; the others keep what was written
    assert data.column("_scale_open").to_pylist()[0] == (18 if fixed else 8)  # 0.00000010
    assert data.column("_scale_taker_buy_quote_volume").to_pylist()[0] == (18 if fixed else 0)  # "0"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BINANCE_LOG_FORMAT": "text"}
    return subprocess.run(
        [sys.executable, "-m", "binance_extractor", "import", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )  # fmt: skip


@pytest.mark.mysql
def test_cli_restores_and_refuses_bad_input_writing_nothing(
    mysql_conn_id: str, sqlite_conn_id: str, tmp_path: Path
) -> None:
    source = new_sink("sqlite", sqlite_conn_id)
    fill(source)  # type: ignore[arg-type]
    m5 = tmp_path / "m5.parquet"
    h1 = tmp_path / "h1.csv"
    export.export(source, "klines_m5", m5)  # type: ignore[arg-type]
    export.export(source, "klines_h1", h1, fmt="csv")  # type: ignore[arg-type]
    target: Store = new_sink("mysql", mysql_conn_id)  # type: ignore[assignment]
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(m5.read_bytes()[: m5.stat().st_size // 2])
    bad_row = tmp_path / "bad.csv"
    lines = h1.read_text().splitlines()
    last = lines[-1].split(",")
    last[5] = "-" + last[5]  # a negative low price in the last row
    bad_row.write_text("\n".join([*lines[:-1], ",".join(last)]) + "\n")
    funding_csv = tmp_path / "funding.csv"
    export.export(source, "funding_rates", funding_csv, fmt="csv")  # type: ignore[arg-type]
    table = list(csv.reader(funding_csv.open()))
    table[-1][2] = "0.0000000000000000001"  # 19 places: MySQL would refuse it half-way through the import
    too_fine = tmp_path / "too_fine.csv"
    with too_fine.open("w", newline="") as fh:
        csv.writer(fh).writerows(table)
    tree = tmp_path / "tree"
    (tree / "klines_m5" / "XRPUSDT").mkdir(parents=True)
    (tree / "klines_m5" / "XRPUSDT" / "2021-11.parquet").write_bytes(m5.read_bytes())
    (tree / "klines_m5" / "XRPUSDT" / "2021-12.parquet").write_bytes(corrupt.read_bytes())
    for args, message in [
        (["--input", str(tmp_path / "nope.parquet")], "no such file"),
        (["--input", str(m5), "--table", "klines_h1"], "holds klines_m5, not klines_h1"),
        (["--input", str(h1), "--table", "klines_m5"], "does not hold valid klines_m5 rows"),
        (["--input", str(h1), "--table", "funding_rates"], "not an export of funding_rates"),
        (["--input", str(h1)], "give --table"),
        (["--input", str(corrupt)], "not a readable Parquet file"),
        (["--input", str(bad_row), "--table", "klines_h1"], "does not hold valid klines_h1 rows"),
        (["--input", str(tree)], "not a readable Parquet file"),  # one good file, one bad: neither is written
        (["--input", str(too_fine), "--table", "funding_rates"], "column funding_rate"),
        (["--input", str(m5), "--sink", "jsonl"], "cannot import into 'jsonl'"),
    ]:
        res = _cli(*args, *([] if "--sink" in args else ["--sink", "mysql"]))
        assert res.returncode == 2, (args, res.stderr)
        assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, (args, res.stderr)
        assert target.count(KLINES_M5) == target.count(KLINES_H1) == target.count(FUNDING_RATES) == 0, args
    ok = _cli("--input", str(m5), "--sink", "mysql")
    assert ok.returncode == 0, ok.stderr
    ok = _cli("--input", str(h1), "--table", "1h", "--sink", "mysql")
    assert ok.returncode == 0, ok.stderr
    assert target.read(KLINES_H1, "XRPUSDT") == source.read(KLINES_H1, "XRPUSDT")  # type: ignore[attr-defined]
    assert target.count(KLINES_M5) == source.count(KLINES_M5)  # type: ignore[attr-defined]
    target.close()
    source.close()


def test_a_directory_without_exports_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no \.parquet or \.csv file"):
        restore.find_inputs(tmp_path)


def test_the_runbooks_restore_drill(sqlite_conn_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/OPERATIONS.md "Restore drill", command for command (SQLite for both stores here): export a --split
    Parquet backup, import it into a scratch store, export both as CSV, compare the bytes; import twice."""
    source = new_sink("sqlite", sqlite_conn_id)
    fill(source)  # type: ignore[arg-type]
    source.close()
    monkeypatch.setenv("AIRFLOW_CONN_RESTORE_CHECK", "sqlite://" + str(tmp_path / "check.sqlite").replace("/", "%2F"))

    def cli(*args: str) -> None:  # in-process: the shell entry point without a process start per command
        assert main(list(args)) == 0, args

    tables = ("klines_m5", "klines_h1", "trades")
    for table in tables:
        cli("export", "--table", table, "--format", "parquet", "--split", "--output", str(tmp_path / "backup"),
            "--sink", "sqlite")  # fmt: skip
    for _ in range(2):  # a second import changes nothing
        cli("import", "--input", str(tmp_path / "backup"), "--sink", "sqlite", "--conn-id", "restore_check")
        for table in tables:
            for name, conn in (("live", "sqlite_default"), ("restored", "restore_check")):
                cli("export", "--table", table, "--format", "csv", "--output", str(tmp_path / f"{name}-{table}.csv"),
                    "--sink", "sqlite", "--conn-id", conn)  # fmt: skip
            live, restored = (tmp_path / f"{n}-{table}.csv" for n in ("live", "restored"))
            assert live.read_bytes() == restored.read_bytes(), table
