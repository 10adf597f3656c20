"""MySQL/MariaDB sink through Airflow's ``MySqlHook`` (mysqlclient), the primary store.

Upserts are multi-row ``INSERT ... ON DUPLICATE KEY UPDATE`` statements built here (one per batch, split at
``max_allowed_packet``; mysqlclient's ``executemany`` only batches statements its regex recognises). MySQL 8.0.20+
deprecates ``VALUES(col)`` there (warning 1287), so from 8.0.19 on the row-alias form ``VALUES (...) AS new ...
UPDATE c = new.c`` is used, chosen from the server version; MariaDB has no row alias and keeps ``VALUES()``.
Every session runs in UTC with strict SQL mode, so a value the column cannot hold is an error, never a silent
truncation; a warning that means a value was changed (1265 rounded, 1264 out of range, ...) fails the batch,
other warnings (deprecations) do not. DECIMAL(38,18) keeps 20 integer and 18 fraction digits: quote volumes
above 10^10 and 8+ decimal prices of low-priced contracts are stored exactly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from binance_extractor import db_timeouts
from binance_extractor.catalog import STORES
from binance_extractor.errors import SinkError
from binance_extractor.sinks.base import check_block, one_line
from binance_extractor.sinks.schema import ColType, Column, Index, TableSpec, spec_for
from binance_extractor.sinks.sql import ServerSqlStore

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = STORES["mysql"].default_conn_id
INIT_COMMAND = "SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ENGINE_SUBSTITUTION'"
SCHEMA_LOCK = "binance_extractor_schema"
SCHEMA_LOCK_WAIT_S = 60
# Lost connection, server gone, cannot connect (restart), deadlock, lock wait timeout: retried after reconnecting.
TRANSIENT_CODES = frozenset({2002, 2003, 2006, 2013, 2055, 1205, 1213})
LOST_CODES = frozenset({2006, 2013})  # gone away / lost connection: also what a read, write or connect timeout gives
# Warnings that mean a stored value differs from the one sent (NULL into NOT NULL, row/column truncated, out of
# range, rounded, incorrect value, invalid string, too long): the batch fails. Others (1287 deprecations) do not.
DATA_WARNINGS = frozenset({1048, 1261, 1262, 1263, 1264, 1265, 1292, 1300, 1366, 1406, 1411})
ROW_ALIAS = "new"


def uses_row_alias(version: str) -> bool:
    """MySQL 8.0.19 and later (not MariaDB, whose version strings say so) support ``VALUES (...) AS alias``."""
    if "mariadb" in version.lower():
        return False
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return m is not None and tuple(int(x) for x in m.groups()) >= (8, 0, 19)


def data_warning(warnings: list[tuple[Any, ...]], count: int) -> tuple[Any, ...] | None:
    """The first warning of ``SHOW WARNINGS`` that changed data; ``count`` above the rows shown fails safe."""
    for level, code, message in warnings:
        if str(level) == "Error" or int(code) in DATA_WARNINGS:
            return level, code, message
    if count > len(warnings):
        return "Warning", None, f"{count - len(warnings)} more warnings than the server lists"
    return None


if TYPE_CHECKING:
    from binance_extractor.archive_columns import KlineBlock
    from binance_extractor.kinds import Dataset


def bulk_upsert_sql(spec: TableSpec, stage: str, row_alias: bool = False) -> str:
    """The set-based upsert from the staging table, in the server's dialect.

    MariaDB and MySQL before 8.0.19 take ``VALUES(c)``; MySQL 8.0.20+ warns (1287) on it, so there the staged rows
    get a derived-table alias instead: ``INSERT ... SELECT * FROM (SELECT ... FROM stage) AS new ... c = new.c``.
    """
    cols = ", ".join(f"`{c}`" for c in spec.column_names)
    updated = [c for c in spec.column_names if c not in spec.key]
    if row_alias:
        sets = ", ".join(f"`{c}` = {ROW_ALIAS}.`{c}`" for c in updated)
        return (
            f"INSERT INTO `{spec.name}` ({cols}) SELECT * FROM (SELECT {cols} FROM `{stage}`) AS {ROW_ALIAS} "
            f"ON DUPLICATE KEY UPDATE {sets}"
        )
    sets = ", ".join(f"`{c}` = VALUES(`{c}`)" for c in updated)
    return f"INSERT INTO `{spec.name}` ({cols}) SELECT {cols} FROM `{stage}` ON DUPLICATE KEY UPDATE {sets}"


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None)


_TYPES: dict[ColType, str] = {
    "symbol": "VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin",
    "time": "DATETIME(3)",
    "dec": "DECIMAL(38,18)",
    "int": "BIGINT",
    "bool": "BOOLEAN",
    "str": "VARCHAR({n})",
    "text": "TEXT",
}


class MySqlStore(ServerSqlStore):
    default_port = 3306
    name = "mysql"
    bulk_csv = True
    ph = "%s"

    def __init__(
        self,
        conn_id: str = DEFAULT_CONN_ID,
        retry_attempts: int | None = None,
        batch_size: int = 5000,
        server_version: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(retry_attempts, **kw)
        self.conn_id = conn_id
        self.batch_size = batch_size
        self._hook_obj: Any = None
        self._max_stmt = 1024 * 1024
        self._stages: set[str] = set()  # staging tables this session has created (temporary: gone on reconnect)
        self._forced_version = server_version  # tests: pretend to be another server (the dialect follows it)
        self.server_version = server_version or ""
        self.timeouts = dict(db_timeouts.MYSQL)  # from the connection's extras once connected

    def _hook(self) -> Any:
        if self._hook_obj is None:
            from airflow.providers.mysql.hooks.mysql import MySqlHook

            self._hook_obj = MySqlHook(mysql_conn_id=self.conn_id, init_command=INIT_COMMAND, local_infile=True)
        return self._hook_obj

    def _connect(self) -> Any:
        from airflow.sdk.exceptions import AirflowNotFoundException

        hook = self._hook()
        try:
            airflow_conn = hook.connection
        except AirflowNotFoundException:
            raise SinkError(f"mysql sink: connection id {self.conn_id!r} is not defined") from None
        self.timeouts = db_timeouts.with_defaults(airflow_conn.extra_dejson, db_timeouts.MYSQL, self._where_conn())
        conn = self._open(hook, airflow_conn)
        conn.autocommit(False)
        self._stages = set()
        cur = conn.cursor()
        cur.execute("SELECT @@max_allowed_packet, VERSION()")
        packet, version = cur.fetchone()
        self._max_stmt = max(64 * 1024, int(packet) // 2)
        self.server_version = self._forced_version or str(version)
        cur.close()
        return conn

    def _open(self, hook: Any, airflow_conn: Any) -> Any:
        """The hook's connection settings plus the timeouts (``MySqlHook`` passes none of them to the driver)."""
        if self._client() == "mysqlclient":
            import MySQLdb

            return MySQLdb.connect(**hook._get_conn_config_mysql_client(airflow_conn), **self.timeouts)
        import mysql.connector

        return mysql.connector.connect(**hook._get_conn_config_mysql_connector_python(airflow_conn), **self.timeouts)

    def _where_conn(self) -> str:
        return f"mysql sink (conn id {self.conn_id})"

    @property
    def row_alias(self) -> bool:
        """Whether upserts use ``AS new`` (MySQL >= 8.0.19) rather than ``VALUES()`` (MariaDB, older MySQL)."""
        if not self.server_version:
            self._connection()
        return uses_row_alias(self.server_version)

    def _transient(self, exc: BaseException) -> bool:
        import MySQLdb

        return isinstance(exc, MySQLdb.OperationalError) and bool(exc.args) and exc.args[0] in TRANSIENT_CODES

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        import MySQLdb

        return (MySQLdb.Error,)

    def _describe(self, exc: BaseException | None) -> str:
        args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
        text = f"({args[0]}) {args[1]}" if len(args) >= 2 else str(exc)
        if args and args[0] in LOST_CODES:  # a silent network ends here too: say which limits applied
            t = self.timeouts
            limits = f"connect {t['connect_timeout']} s, read {t['read_timeout']} s, write {t['write_timeout']} s"
            text += f" (timeouts: {limits})"
        return f"mysql sink ({self._where_text()}, conn id {self.conn_id}): {one_line(text, self._secrets())}"

    def _after_batch(self, cur: Any, table: str) -> None:
        """Strict mode still only *notes* a DECIMAL rounded to 18 places (1265): refuse it, the batch rolls back.

        Only warnings that changed a value fail the batch; MySQL 8's deprecation notes (1287) do not."""
        count = cur.connection.warning_count()
        if not count:
            return
        cur.execute("SHOW WARNINGS")
        warnings = [tuple(w) for w in cur.fetchall()]
        bad = data_warning(warnings, count)
        if bad is not None:
            level, code, message = bad
            raise SinkError(
                f"mysql sink ({self._where_text()}): {table} cannot store a value exactly ({level} {code}: "
                f"{message}); nothing of the batch was written"
            )
        log.debug("mysql sink: %s: ignored warnings %s", table, [w[1] for w in warnings])

    def _write_batch(self, cur: Any, table: str, sql: str, params: list[tuple[Any, ...]]) -> None:
        """One multi-row upsert per ``max_allowed_packet / 2`` bytes, its warnings checked after each."""
        if self._client() != "mysqlclient":
            super()._write_batch(cur, table, sql, params)
            return
        head, _, tail = self._upsert_parts(spec_for(table))
        head_b, tail_b = head.encode(), tail.encode()
        literal = cur.connection.literal  # b"(v1,v2,...)": each value escaped as mysqlclient's executemany does
        budget = self._max_stmt - len(head_b) - len(tail_b)
        rows: list[bytes] = []
        size = 0
        for row in params:
            value = literal(row)
            if rows and size + len(value) + 1 > budget:
                cur.execute(head_b + b",".join(rows) + tail_b)
                self._after_batch(cur, table)
                rows, size = [], 0
            rows.append(value)
            size += len(value) + 1
        if rows:
            cur.execute(head_b + b",".join(rows) + tail_b)
            self._after_batch(cur, table)

    def _begin(self, cur: Any, write: bool) -> None:
        # Autocommit is off: the first statement opens the transaction. One multi-row INSERT per batch (not
        # mysqlclient's 64 KiB pieces) so the warning check after it sees every row, with fewer round trips.
        cur.max_stmt_length = self._max_stmt

    @contextlib.contextmanager
    def _schema_lock(self, cur: Any) -> Iterator[None]:
        """Serialize migrations across processes (DDL autocommits in MySQL, so a transaction cannot).

        Waits up to 60 s in steps shorter than the read timeout: a step's silent wait must not look like a
        stalled network to the client library."""
        read = self.timeouts["read_timeout"]
        step = max(1, min(10, read // 2)) if read else 10
        deadline = time.monotonic() + SCHEMA_LOCK_WAIT_S
        while True:
            cur.execute("SELECT GET_LOCK(%s, %s)", (SCHEMA_LOCK, step))
            if cur.fetchone()[0] == 1:
                break
            if time.monotonic() >= deadline:
                raise SinkError(f"mysql sink ({self._where_text()}): timed out waiting for the schema lock")
        try:
            yield
        finally:
            cur.execute("SELECT RELEASE_LOCK(%s)", (SCHEMA_LOCK,))
            cur.fetchall()

    def ms_between_sql(self, a: str, b: str) -> str:
        return f"(TIMESTAMPDIFF(MICROSECOND, {a}, {b}) DIV 1000)"  # DATETIME(3)

    def _q(self, name: str) -> str:
        return f"`{name}`"

    def _create_table_sql(self, spec: TableSpec) -> str:
        cols = [self._column_sql(c) for c in spec.columns]
        key = ", ".join(f"`{k}`" for k in spec.key)
        return (
            f"CREATE TABLE IF NOT EXISTS `{spec.name}` ({', '.join(cols)}, PRIMARY KEY ({key})) "
            "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )

    def _column_sql(self, column: Column) -> str:
        kind = _TYPES[column.type].format(n=column.length or 255)
        return f"`{column.name}` {kind}{' NULL' if column.nullable else ' NOT NULL'}"

    def _text_sql(self, column: str) -> str:
        return f"CAST({column} AS CHAR)"

    def _ms_sql(self, column: str) -> str:
        return f"(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {column}) DIV 1000)"  # UTC session, DATETIME(3)

    def _table_names_sql(self) -> str:
        return "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"

    def _index_exists(self, cur: Any, index: Index) -> bool:
        cur.execute(
            "SELECT 1 FROM information_schema.statistics WHERE table_schema = DATABASE() "
            "AND table_name = %s AND index_name = %s LIMIT 1",
            (index.table, index.name),
        )
        return cur.fetchone() is not None

    def _upsert_parts(self, spec: TableSpec) -> tuple[str, str, str]:
        """(``INSERT ... VALUES ``, one row's placeholders, `` [AS new] ON DUPLICATE KEY UPDATE ...``)."""
        cols = ", ".join(f"`{c}`" for c in spec.column_names)
        marks = "(" + ", ".join("%s" for _ in spec.columns) + ")"
        updated = [c for c in spec.column_names if c not in spec.key]
        if self.row_alias:
            sets = ", ".join(f"`{c}` = {ROW_ALIAS}.`{c}`" for c in updated)
            tail = f" AS {ROW_ALIAS} ON DUPLICATE KEY UPDATE {sets}"
        else:
            sets = ", ".join(f"`{c}` = VALUES(`{c}`)" for c in updated)
            tail = f" ON DUPLICATE KEY UPDATE {sets}"
        return f"INSERT INTO `{spec.name}` ({cols}) VALUES ", marks, tail

    def _upsert_sql(self, spec: TableSpec) -> str:
        head, marks, tail = self._upsert_parts(spec)
        return head + marks + tail

    def write_block(self, dataset: Dataset, block: KlineBlock) -> int:
        """One archive file: ``LOAD DATA LOCAL INFILE`` into a session staging table, then one set-based upsert,
        in one transaction. Any warning (a value the column would round or reject: LOCAL turns errors into
        warnings) rolls the whole file back; a re-run converges because the upsert is idempotent."""
        check_block(dataset, block)
        if not len(block):
            return 0
        spec = self._ready(dataset)
        table = spec.name
        stage = f"_bx_stage_{table}"
        cols = ", ".join(f"`{c}`" for c in spec.column_names)
        fd, path = tempfile.mkstemp(prefix="bx-load-", suffix=".csv")
        try:
            with os.fdopen(fd, "wb") as fh:
                block.write_csv(fh)

            def run(cur: Any) -> int:
                if self._range_empty(cur, spec, block):  # history: straight in, at raw LOAD DATA speed
                    cur.execute(
                        f"LOAD DATA LOCAL INFILE %s REPLACE INTO TABLE `{table}` CHARACTER SET ascii "
                        f"FIELDS TERMINATED BY ',' LINES TERMINATED BY '\\n' ({cols})",
                        (path,),
                    )
                    self._after_batch(cur, table)
                    if int(cur.rowcount) < len(block):  # REPLACE counts a row a racing writer stored twice
                        where = self._where_text()
                        raise SinkError(f"mysql sink ({where}): loaded {cur.rowcount} of {len(block)} rows")
                    return len(block)
                if stage not in self._stages:
                    # a MEMORY table: the stage never touches InnoDB's log; sized for the largest file (m1, a month)
                    cur.execute("SET SESSION max_heap_table_size = 268435456")
                    cur.execute(self._stage_sql(spec, stage))
                    self._stages.add(stage)
                cur.execute(f"DELETE FROM `{stage}`")
                cur.execute(
                    f"LOAD DATA LOCAL INFILE %s INTO TABLE `{stage}` CHARACTER SET ascii "
                    f"FIELDS TERMINATED BY ',' LINES TERMINATED BY '\\n' ({cols})",
                    (path,),
                )
                self._after_batch(cur, table)
                loaded = int(cur.rowcount)
                if loaded != len(block):
                    raise SinkError(f"mysql sink ({self._where_text()}): loaded {loaded} of {len(block)} rows")
                cur.execute(bulk_upsert_sql(spec, stage, self.row_alias))
                self._after_batch(cur, table)
                return len(block)

            return self._tx(run)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _range_empty(self, cur: Any, spec: TableSpec, block: KlineBlock) -> bool:
        """No stored candle of the block's symbol between its first and last open time (one index probe).

        Then the file loads straight into the table (``REPLACE``: a writer racing in between still converges to
        the same rows) instead of through the stage and a set-based upsert, which costs a second pass."""
        from binance_extractor.timeutil import ms_to_dt

        opens = block.columns["open_time"]
        lo, hi = (self._to_db("time", ms_to_dt(int(opens[i].as_py()))) for i in (0, len(block) - 1))
        cur.execute(
            f"SELECT 1 FROM `{spec.name}` WHERE symbol = %s AND `{spec.time_column}` BETWEEN %s AND %s LIMIT 1",
            (block.symbol, lo, hi),
        )
        return cur.fetchone() is None

    def _stage_sql(self, spec: TableSpec, stage: str) -> str:
        """The session's staging table: the target's columns, no key, in memory (gone with the session)."""
        cols = ", ".join(f"`{c.name}` {_TYPES[c.type].format(n=c.length or 255)}" for c in spec.columns)
        return f"CREATE TEMPORARY TABLE IF NOT EXISTS `{stage}` ({cols}) ENGINE=MEMORY"

    def _delete_sql(self, spec: TableSpec, limit: int) -> str:
        return f"DELETE FROM `{spec.name}` WHERE symbol = %s AND `{spec.time_column}` < %s LIMIT {int(limit)}"

    def _write_converter(self, type_: ColType) -> Callable[[Any], Any] | None:
        """Nothing to convert with mysqlclient: Decimal is sent as its exact text, and a datetime literal is its
        wall time (``MySQLdb.times.format_TIMESTAMP`` ignores tzinfo); model datetimes are validated aware UTC,
        so the UTC wall time lands in the UTC session. Another client library gets naive datetimes."""
        if type_ == "time" and self._client() != "mysqlclient":
            return _naive
        return None

    def _client(self) -> str:
        try:
            return str(self._hook().connection.extra_dejson.get("client", "mysqlclient"))
        except Exception:
            return "mysqlclient"

    def _to_db(self, type_: ColType, value: Any) -> Any:
        if type_ == "time":
            # Model datetimes are aware UTC already; the session time zone is UTC, DATETIME wants naive.
            if value.utcoffset():
                value = value.astimezone(UTC)
            return value.replace(tzinfo=None)
        return value

    def _from_db(self, type_: ColType, value: Any) -> Any:
        if type_ == "time":
            return value.replace(tzinfo=UTC) if isinstance(value, datetime) else value
        if type_ == "bool":
            return bool(value)
        if type_ == "int":
            return int(value)
        return value

    def explain_last_time(self, dataset: Dataset, symbol: str) -> list[dict[str, Any]]:
        """EXPLAIN of the last_time query (to check it is served by the PRIMARY key)."""
        self._ready(dataset)
        sql = "EXPLAIN " + self.last_time_sql(dataset)

        def run(cur: Any) -> list[dict[str, Any]]:
            cur.execute(sql, (symbol,))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        return self._tx(run, write=False)
