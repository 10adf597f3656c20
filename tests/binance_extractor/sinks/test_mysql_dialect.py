"""MySQL 8 vs MariaDB upserts and the warning filter, on the real MariaDB (no MySQL 8 server can be installed here).

The dialect follows the server version, so a fake version string shows the MySQL 8 statement; MariaDB itself
raises the warnings the filter sees (its own 1287 deprecation, and 1265 for a rounded DECIMAL).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from binance_extractor.errors import SinkError
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.mysql import MySqlStore, data_warning, uses_row_alias
from binance_extractor.sinks.schema import spec_for
from tests.binance_extractor.sinks.conftest import klines

KLINES_M5 = Dataset.of_table("klines_m5")

pytestmark = pytest.mark.mysql

DEPRECATED = "'VALUES function' is deprecated and will be removed in a future release"


@pytest.fixture
def mysql(mysql_conn_id: str) -> Iterator[MySqlStore]:
    sink = MySqlStore(mysql_conn_id, retry_attempts=1)
    sink.ensure_schema()
    yield sink
    sink.close()


@pytest.mark.parametrize(
    ("version", "alias"),
    [
        ("10.11.6-MariaDB-0+deb12u1", False),
        ("11.4.2-MariaDB", False),
        ("5.7.44-log", False),
        ("8.0.18", False),
        ("8.0.19", True),
        ("8.0.36-0ubuntu0.22.04.1", True),
        ("8.4.3", True),
        ("9.1.0-commercial", True),
    ],
)
def test_row_alias_only_from_mysql_8_0_19(version: str, alias: bool) -> None:
    assert uses_row_alias(version) is alias


def test_mariadb_is_detected_and_keeps_values(mysql: MySqlStore) -> None:
    assert "mariadb" in mysql.server_version.lower()
    sql = mysql._upsert_sql(spec_for("klines_m5"))
    assert "`close` = VALUES(`close`)" in sql and " AS new " not in sql


def test_a_mysql_8_version_gets_the_row_alias_statement(mysql_conn_id: str) -> None:
    sink = MySqlStore(mysql_conn_id, server_version="8.0.36")
    try:
        sql = sink._upsert_sql(spec_for("klines_m5"))
    finally:
        sink.close()
    assert sql.startswith("INSERT INTO `klines_m5` (`symbol`, ")
    assert "VALUES (%s, " in sql and ") AS new ON DUPLICATE KEY UPDATE " in sql
    assert "`close` = new.`close`" in sql and "VALUES(" not in sql
    assert "`open_time` = new" not in sql  # key columns are never updated


def test_a_batch_is_one_multi_row_statement_and_an_idempotent_upsert(mysql: MySqlStore) -> None:
    def inserts() -> int:
        return int(mysql.query("SHOW SESSION STATUS LIKE 'Com_insert'")[0][1])

    before = inserts()
    mysql.write(KLINES_M5, klines(n=300))
    assert inserts() - before == 1
    mysql.write(KLINES_M5, klines(n=300, extra=Decimal("0.25")))
    rows = mysql.read(KLINES_M5, "XRPUSDT")
    assert len(rows) == 300
    assert [r["volume"] for r in rows] == [k.volume for k in klines(n=300, extra=Decimal("0.25"))]


def test_a_deprecation_warning_from_the_server_does_not_fail_the_batch(mysql: MySqlStore) -> None:
    def run(cur: Any) -> tuple[Any, ...]:
        cur.execute("SET SESSION old = 0")  # MariaDB's own 1287 "... is deprecated", like MySQL 8's VALUES()
        count = cur.connection.warning_count()
        cur.execute("SHOW WARNINGS")
        warnings = (count, tuple(cur.fetchone()))
        cur.execute("SET SESSION old = 0")
        mysql._after_batch(cur, "klines_m5")  # the sink's check after a statement: ignored
        return warnings

    count, warning = mysql._tx(run)
    assert count == 1 and warning[1] == 1287 and "deprecated" in warning[2]


def test_a_rounded_value_reported_by_the_server_fails_the_whole_batch(mysql: MySqlStore) -> None:
    rows = klines(n=50)
    rows[30] = rows[30].model_copy(update={"volume": Decimal("1.1234567890123456789")})  # 19 decimals: 1265
    with pytest.raises(SinkError, match=r"klines_m5 cannot store a value exactly \(Note 1265: "):
        mysql.write(KLINES_M5, rows)
    assert mysql.count(KLINES_M5, "XRPUSDT") == 0


def test_warning_filter() -> None:
    deprecation = ("Warning", 1287, DEPRECATED)
    assert data_warning([deprecation], 1) is None
    assert data_warning([deprecation, ("Note", 1265, "Data truncated")], 2) == ("Note", 1265, "Data truncated")
    assert data_warning([("Warning", 1366, "Incorrect decimal value")], 1) is not None
    assert data_warning([deprecation], 70) is not None  # more than the server lists: fail safe


@pytest.mark.parametrize("row_alias", [False, True], ids=["values", "row-alias"])
def test_the_bulk_upsert_runs_in_both_spellings_and_updates_in_place(
    mysql: MySqlStore, mysql_database: str, row_alias: bool
) -> None:
    """The archive path's set-based upsert: MySQL 8's derived-table alias form is also valid on MariaDB, so both
    spellings run here for real against a staged copy of changed candles."""
    import MySQLdb

    from binance_extractor.sinks.mysql import bulk_upsert_sql
    from tests.fixtures.databases import MYSQL_HOST, MYSQL_PORT

    mysql.write(KLINES_M5, klines(n=50))
    conn = MySQLdb.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", passwd="", db=mysql_database)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE stage_m5 AS SELECT * FROM klines_m5 WHERE 1 = 0")
        cur.execute("INSERT INTO stage_m5 SELECT * FROM klines_m5")
        cur.execute("UPDATE stage_m5 SET volume = volume + 0.25")
        sql = bulk_upsert_sql(spec_for("klines_m5"), "stage_m5", row_alias)
        assert ("AS new ON DUPLICATE KEY UPDATE" in sql) is row_alias and ("VALUES(" in sql) is not row_alias
        cur.execute(sql)
        conn.commit()
    finally:
        conn.close()
    rows = mysql.read(KLINES_M5, "XRPUSDT")
    assert [r["volume"] for r in rows] == [k.volume for k in klines(n=50, extra=Decimal("0.25"))]
