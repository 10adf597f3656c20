"""``copy`` from SQLite to MariaDB: a day of every table arrives exact, a second copy changes nothing, an
interrupted copy continues where it stopped and ends exact, ``--verify`` repairs a row the count cannot see."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from binance_extractor import store_copy
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.columns import from_rows
from binance_extractor.sinks.mysql import MySqlStore
from binance_extractor.sinks.schema import spec_for
from binance_extractor.sinks.sqlite import SqliteStore
from binance_extractor.timeutil import ms_to_dt
from tests.binance_extractor.store_dump import BOOKKEEPING, TABLES, dump, dump_all, fill
from tests.binance_extractor.store_helpers import store, store_kind  # noqa: F401

KLINES_H1 = Dataset.of_table("klines_h1")
KLINES_M5 = Dataset.of_table("klines_m5")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def source(sqlite_conn_id: str) -> Any:
    s = SqliteStore(sqlite_conn_id)
    s.ensure_schema()
    fill(s)
    yield s
    s.close()


@pytest.fixture
def target(mysql_conn_id: str) -> Any:
    t = MySqlStore(mysql_conn_id, retry_attempts=2)
    yield t
    t.close()


def assert_exact(source: Any, target: Any) -> None:
    """Every row of every table equal as values, and MariaDB's text is SQLite's digits at its 18 places."""
    for table in TABLES:
        dataset = Dataset.of_table(table)
        for symbol in source.symbols(dataset):
            assert target.read(dataset, symbol) == source.read(dataset, symbol), (table, symbol)
    src, dst = dump_all(source), dump_all(target)
    for table in (*TABLES, *BOOKKEEPING):
        assert len(dst[table]) == len(src[table]) > 0, table
        types = [c.type for c in spec_for(table).columns]
        for a, b in zip(src[table], dst[table], strict=True):
            for t, x, y in zip(types, a, b, strict=True):
                if x is None or t not in ("dec", "time"):
                    assert x == y, (table, a, b)
                elif t == "dec":  # DECIMAL(38,18): the same number, at 18 places
                    assert Decimal(y) == Decimal(x) and len(y.split(".")[1]) == 18, (table, x, y)
                else:  # SQLite keeps epoch ms, MariaDB DATETIME(3) text
                    assert y == ms_to_dt(int(x)).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], (table, x, y)
    assert target.runs_page(None, 100) == source.runs_page(None, 100)
    assert target.gaps_page(None, 100) == source.gaps_page(None, 100)


def checksums(target: Any) -> dict[str, Any]:
    return {t: target.query(f"CHECKSUM TABLE `{t}`")[0][1] for t in (*TABLES, *BOOKKEEPING)}


@pytest.mark.mysql
def test_a_day_from_sqlite_to_mariadb_is_exact_and_a_second_copy_changes_nothing(source: Any, target: Any) -> None:
    results = store_copy.copy_stores(source, target)
    by_table = {r.table: r for r in results}
    assert {*TABLES, *BOOKKEEPING} <= set(by_table)  # and the empty klines_m15, m30, d1 the schema made
    assert by_table["klines_m5"].written == by_table["klines_m5"].rows == 2 * 288
    assert_exact(source, target)
    before = checksums(target)
    again = store_copy.copy_stores(source, target)
    assert [r.written for r in again] == [0] * len(again)
    assert [r.skipped for r in again] == [r.rows for r in results]
    assert checksums(target) == before
    store_copy.copy_stores(source, target, verify=True)
    assert checksums(target) == before


class Interrupted(Exception):
    pass


class FailingTarget(MySqlStore):
    """A target that dies (as a killed process would) at its ``fail_at``-th bulk load."""

    fail_at = 4
    loads = 0

    def write_block(self, dataset: Dataset, block: Any) -> int:
        FailingTarget.loads += 1
        if FailingTarget.loads == self.fail_at:
            raise KeyboardInterrupt
        return super().write_block(dataset, block)


@pytest.mark.mysql
def test_an_interrupted_copy_continues_and_ends_exact(source: Any, target: Any, mysql_conn_id: str) -> None:
    dying = FailingTarget(mysql_conn_id)
    with pytest.raises(KeyboardInterrupt):
        store_copy.copy_stores(source, dying, batch_rows=50)
    dying.close()
    copied = target.count(KLINES_M5)
    assert 0 < copied < 2 * 288 and copied % 50 == 0  # whole windows only
    results = {r.table: r for r in store_copy.copy_stores(source, target, batch_rows=50)}
    assert results["klines_m5"].skipped == copied  # it continued: what was there is not written again
    assert results["klines_m5"].written == 2 * 288 - copied
    assert_exact(source, target)


@pytest.mark.mysql
def test_verify_rewrites_a_window_whose_count_matches_but_values_differ(source: Any, target: Any) -> None:
    store_copy.copy_stores(source, target, ["klines_h1"])
    good = dump(target, "klines_h1")
    first = "(SELECT MIN(open_time) FROM (SELECT open_time FROM klines_h1) AS t)"
    target._tx(lambda cur: cur.execute(f"UPDATE klines_h1 SET close = close + 1 WHERE open_time = {first}"))
    [plain] = store_copy.copy_stores(source, target, ["klines_h1"])
    assert plain.written == 0 and dump(target, "klines_h1") != good  # a count cannot see a changed value
    [checked] = store_copy.copy_stores(source, target, ["1h"], verify=True)
    assert checked.written == 24 and dump(target, "klines_h1") == good


@pytest.mark.mysql
def test_cli_copies_chosen_tables_and_symbols_and_refuses_bad_input(
    source: Any, target: Any, sqlite_conn_id: str, mysql_conn_id: str
) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "binance_extractor", "copy", *args],
            capture_output=True, text=True, env={**os.environ, "BINANCE_LOG_FORMAT": "text"}, cwd=ROOT, check=False,
        )  # fmt: skip

    for args, message in [
        (["--from", "sqlite", "--to", "jsonl"], "--to 'jsonl'"),
        (["--from", "sqlite", "--to", "sqlite"], "same store"),
        (["--from", "sqlite", "--to", "mysql", "--table", "candles"], "unknown table"),
        (["--from", "sqlite", "--to", "mysql", "--symbols", "BTC-USDT"], "malformed symbol"),
    ]:
        res = cli(*args)
        assert res.returncode == 2 and message in res.stderr, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1
    assert target.count(KLINES_M5) == 0
    ok = cli("--from", "sqlite", "--to", "mysql", "--table", "m5,gap_ledger", "extraction_runs", "--symbols", "ETHUSDT")
    assert ok.returncode == 0, ok.stderr
    assert target.symbols(KLINES_M5) == ["ETHUSDT"] and target.count(KLINES_M5) == 288
    assert target.count(KLINES_H1) == 0 and target.gaps_page(None, 10) == []  # the holes are XRPUSDT's
    assert [r.symbol for r in target.runs_page(None, 10)] == ["ETHUSDT"]


@pytest.mark.parametrize("table", ["klines_m5", "klines_h1", "funding_rates", "agg_trades", "trades"])
def test_read_columns_is_read_as_text_and_epoch_ms_on_every_store(
    store: Any,  # noqa: F811
    table: str,
) -> None:
    """The copy's column reader (one SELECT of text decimals and epoch-ms times on SQL stores) gives exactly the
    values ``read`` gives, on every store; a window's bounds are honoured."""
    fill(store)
    spec = spec_for(table)
    dataset = Dataset.of_table(table)
    for symbol in store.symbols(dataset):
        rows = store.read(dataset, symbol)
        lo, hi = rows[1][spec.time_column], rows[-1][spec.time_column]
        for start, end in ((None, None), (lo, hi)):
            got = store.read_columns(dataset, symbol, start, end)
            want = [r for r in rows if start is None or start <= r[spec.time_column] < end]
            assert got.equals(from_rows(spec, want)), (table, symbol)
            assert [Decimal(v) for v in got.column(spec.columns[2].name).to_pylist() if v is not None] == [
                r[spec.columns[2].name] for r in want if r[spec.columns[2].name] is not None
            ] or spec.columns[2].type != "dec"


def test_read_columns_rewrites_exponent_text_an_older_sqlite_file_holds(sqlite_conn_id: str, tmp_path: Path) -> None:
    s = SqliteStore(sqlite_conn_id)
    fill(s)
    s._tx(lambda cur: cur.execute("UPDATE klines_h1 SET open = '1.0E-7', volume = '0E-8' WHERE trade_count = 0"))
    cols = s.read_columns(KLINES_H1, "XRPUSDT")
    assert cols.column("open").to_pylist()[0] == "0.00000010" and cols.column("volume").to_pylist()[0] == "0.00000000"
    s.close()
