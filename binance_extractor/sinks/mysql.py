"""MySQL/MariaDB sink through Airflow's ``MySqlHook`` (mysqlclient), the primary store.

Upserts are ``cursor.executemany("INSERT ... ON DUPLICATE KEY UPDATE ...")`` in batches: mysqlclient
rewrites that into multi-row INSERTs (about 10x faster than the hook's row-by-row ``insert_rows``).
Every session runs in UTC with strict SQL mode, so a value the column cannot hold is an error, never a
silent truncation. DECIMAL(38,18) keeps 20 integer and 18 fraction digits: quote volumes above 10^10 and
8+ decimal prices of low-priced contracts are stored exactly.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from binance_extractor.errors import SinkError
from binance_extractor.sinks.base import check_block, one_line
from binance_extractor.sinks.schema import ColType, Index, TableSpec
from binance_extractor.sinks.sql import SqlSink

DEFAULT_CONN_ID = "mysql_default"
INIT_COMMAND = "SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ENGINE_SUBSTITUTION'"
SCHEMA_LOCK = "binance_extractor_schema"
# Lost connection, server gone, cannot connect (restart), deadlock, lock wait timeout: retried after reconnecting.
TRANSIENT_CODES = frozenset({2002, 2003, 2006, 2013, 2055, 1205, 1213})


if TYPE_CHECKING:
    from binance_extractor.archive_columns import KlineBlock


def bulk_upsert_sql(spec: TableSpec, stage: str) -> str:
    """The set-based upsert from the staging table (MariaDB / MySQL < 8.0.20 ``VALUES()`` spelling).

    The one place the bulk path spells the dialect: MySQL 8's row alias would be
    ``INSERT INTO t (cols) SELECT * FROM (SELECT cols FROM stage) AS new ON DUPLICATE KEY UPDATE c = new.c``.
    """
    cols = ", ".join(f"`{c}`" for c in spec.column_names)
    sets = ", ".join(f"`{c}` = VALUES(`{c}`)" for c in spec.column_names if c not in spec.key)
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


class MySqlSink(SqlSink):
    name = "mysql"
    ph = "%s"

    def __init__(
        self, conn_id: str = DEFAULT_CONN_ID, retry_attempts: int | None = None, batch_size: int = 5000, **kw: Any
    ) -> None:
        super().__init__(retry_attempts, **kw)
        self.conn_id = conn_id
        self.batch_size = batch_size
        self._hook_obj: Any = None
        self._max_stmt = 1024 * 1024
        self._stages: set[str] = set()  # staging tables this session has created (temporary: gone on reconnect)

    def _hook(self) -> Any:
        if self._hook_obj is None:
            from airflow.providers.mysql.hooks.mysql import MySqlHook

            self._hook_obj = MySqlHook(mysql_conn_id=self.conn_id, init_command=INIT_COMMAND, local_infile=True)
        return self._hook_obj

    def _connect(self) -> Any:
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            conn = self._hook().get_conn()
        except AirflowNotFoundException:
            raise SinkError(f"mysql sink: connection id {self.conn_id!r} is not defined") from None
        conn.autocommit(False)
        self._stages = set()
        cur = conn.cursor()
        cur.execute("SELECT @@max_allowed_packet")
        self._max_stmt = max(64 * 1024, int(cur.fetchone()[0]) // 2)
        cur.close()
        return conn

    def _where_text(self) -> str:
        try:
            c = self._hook().connection
            return f"{c.host or 'localhost'}:{c.port or 3306}/{c.schema or ''}"
        except Exception:
            return self.conn_id

    def _secrets(self) -> list[str | None]:
        try:
            return [self._hook().connection.password]
        except Exception:
            return []

    def _transient(self, exc: BaseException) -> bool:
        import MySQLdb

        return isinstance(exc, MySQLdb.OperationalError) and bool(exc.args) and exc.args[0] in TRANSIENT_CODES

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        import MySQLdb

        return (MySQLdb.Error,)

    def _describe(self, exc: BaseException | None) -> str:
        args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
        text = f"({args[0]}) {args[1]}" if len(args) >= 2 else str(exc)
        return f"mysql sink ({self._where_text()}, conn id {self.conn_id}): {one_line(text, self._secrets())}"

    def _after_batch(self, cur: Any, table: str) -> None:
        """Strict mode still only *notes* a DECIMAL rounded to 18 places (1265): refuse it, the batch rolls back."""
        if not cur.connection.warning_count():
            return
        cur.execute("SHOW WARNINGS LIMIT 1")
        level, code, message = cur.fetchone()
        raise SinkError(
            f"mysql sink ({self._where_text()}): {table} cannot store a value exactly ({level} {code}: {message}); "
            "nothing of the batch was written"
        )

    def _begin(self, cur: Any, write: bool) -> None:
        # Autocommit is off: the first statement opens the transaction. One multi-row INSERT per batch (not
        # mysqlclient's 64 KiB pieces) so the warning check after it sees every row, with fewer round trips.
        cur.max_stmt_length = self._max_stmt

    @contextlib.contextmanager
    def _schema_lock(self, cur: Any) -> Iterator[None]:
        """Serialize migrations across processes (DDL autocommits in MySQL, so a transaction cannot)."""
        cur.execute("SELECT GET_LOCK(%s, 60)", (SCHEMA_LOCK,))
        if cur.fetchone()[0] != 1:
            raise SinkError(f"mysql sink ({self._where_text()}): timed out waiting for the schema lock")
        try:
            yield
        finally:
            cur.execute("SELECT RELEASE_LOCK(%s)", (SCHEMA_LOCK,))
            cur.fetchall()

    def _q(self, name: str) -> str:
        return f"`{name}`"

    def _create_table_sql(self, spec: TableSpec) -> str:
        cols = [
            f"`{c.name}` {_TYPES[c.type].format(n=c.length or 255)}{' NULL' if c.nullable else ' NOT NULL'}"
            for c in spec.columns
        ]
        key = ", ".join(f"`{k}`" for k in spec.key)
        return (
            f"CREATE TABLE IF NOT EXISTS `{spec.name}` ({', '.join(cols)}, PRIMARY KEY ({key})) "
            "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
        )

    def _index_exists(self, cur: Any, index: Index) -> bool:
        cur.execute(
            "SELECT 1 FROM information_schema.statistics WHERE table_schema = DATABASE() "
            "AND table_name = %s AND index_name = %s LIMIT 1",
            (index.table, index.name),
        )
        return cur.fetchone() is not None

    def _upsert_sql(self, spec: TableSpec) -> str:
        cols = ", ".join(f"`{c}`" for c in spec.column_names)
        marks = ", ".join("%s" for _ in spec.columns)
        sets = ", ".join(f"`{c}` = VALUES(`{c}`)" for c in spec.column_names if c not in spec.key)
        return f"INSERT INTO `{spec.name}` ({cols}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {sets}"

    def write_block(self, table: str, block: KlineBlock) -> int:
        """One archive file: ``LOAD DATA LOCAL INFILE`` into a session staging table, then one set-based upsert,
        in one transaction. Any warning (a value the column would round or reject: LOCAL turns errors into
        warnings) rolls the whole file back; a re-run converges because the upsert is idempotent."""
        check_block(table, block)
        if not len(block):
            return 0
        spec = self._prepare(table)
        stage = f"_bx_stage_{table}"
        cols = ", ".join(f"`{c}`" for c in spec.column_names)
        fd, path = tempfile.mkstemp(prefix="bx-load-", suffix=".csv")
        try:
            with os.fdopen(fd, "wb") as fh:
                block.write_csv(fh)

            def run(cur: Any) -> int:
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
                cur.execute(bulk_upsert_sql(spec, stage))
                self._after_batch(cur, table)
                return len(block)

            return self._tx(run)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

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

    def explain_last_time(self, table: str, symbol: str) -> list[dict[str, Any]]:
        """EXPLAIN of the last_time query (to check it is served by the PRIMARY key)."""
        self._prepare(table)
        sql = "EXPLAIN " + self.last_time_sql(table)

        def run(cur: Any) -> list[dict[str, Any]]:
            cur.execute(sql, (symbol,))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        return self._tx(run, write=False)
