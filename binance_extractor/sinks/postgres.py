"""PostgreSQL sink through Airflow's ``PostgresHook`` (psycopg 3): the same tables, keys and migrations as MySQL.

Decimals are unconstrained ``NUMERIC`` (exact at any scale: nothing is ever rounded), times ``TIMESTAMPTZ(3)``
read in a UTC session. Upserts are ``INSERT ... ON CONFLICT (key) DO UPDATE``; migrations hold a transaction
advisory lock (DDL is transactional here, so a racing process waits and then finds the tables). TimescaleDB
is not needed; plain tables with their primary keys serve every query. Connections carry libpq's timeouts and a
statement deadline from the connection's extras (``binance_extractor.db_timeouts``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from binance_extractor import db_timeouts
from binance_extractor.catalog import STORES
from binance_extractor.errors import SinkError
from binance_extractor.sinks.base import check_block, one_line
from binance_extractor.sinks.schema import ColType, Column, Index, TableSpec, spec_for
from binance_extractor.sinks.sql import ServerSqlStore

if TYPE_CHECKING:
    from binance_extractor.archive_columns import KlineBlock
    from binance_extractor.kinds import Dataset

DEFAULT_CONN_ID = STORES["postgres"].default_conn_id
SCHEMA_LOCK_KEY = 0x62696E616E6365  # pg_advisory_xact_lock key of schema migrations ("binance")

_TYPES: dict[ColType, str] = {
    "symbol": "VARCHAR(32)",
    "time": "TIMESTAMP(3) WITH TIME ZONE",
    "dec": "NUMERIC",
    "int": "BIGINT",
    "bool": "BOOLEAN",
    "str": "VARCHAR({n})",
    "text": "TEXT",
}


def bulk_upsert_sql(spec: TableSpec, stage: str) -> str:
    """The set-based upsert from the staging table."""
    cols = ", ".join(f'"{c}"' for c in spec.column_names)
    key = ", ".join(f'"{k}"' for k in spec.key)
    sets = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in spec.column_names if c not in spec.key)
    return f'INSERT INTO "{spec.name}" ({cols}) SELECT {cols} FROM "{stage}" ON CONFLICT ({key}) DO UPDATE SET {sets}'


class PostgresStore(ServerSqlStore):
    default_port = 5432
    name = "postgres"
    bulk_csv = True
    ph = "%s"
    row_id = "ctid"
    insert_ignore = "INSERT"
    insert_ignore_suffix = " ON CONFLICT DO NOTHING"

    def __init__(
        self, conn_id: str = DEFAULT_CONN_ID, retry_attempts: int | None = None, batch_size: int = 5000, **kw: Any
    ) -> None:
        super().__init__(retry_attempts, **kw)
        self.conn_id = conn_id
        self.batch_size = batch_size
        self._hook_obj: Any = None

    def _hook(self) -> Any:
        if self._hook_obj is None:
            from airflow.providers.postgres.hooks.postgres import PostgresHook

            self._hook_obj = PostgresHook(postgres_conn_id=self.conn_id)
        return self._hook_obj

    def _connect(self) -> Any:
        from airflow.sdk.exceptions import AirflowNotFoundException

        hook = self._hook()
        try:
            airflow_conn = hook.connection
        except AirflowNotFoundException:
            raise SinkError(f"postgres sink: connection id {self.conn_id!r} is not defined") from None
        extras, answer_s = db_timeouts.postgres(airflow_conn.extra_dejson, f"postgres sink (conn id {self.conn_id})")
        airflow_conn.extra = json.dumps(extras)  # PostgresHook hands every extra to libpq: the timeouts included
        conn = hook.get_conn()
        db_timeouts.answer_within(conn, answer_s)
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
        conn.commit()
        return conn

    def _transient(self, exc: BaseException) -> bool:
        import psycopg

        transient = (
            psycopg.OperationalError,
            psycopg.errors.DeadlockDetected,
            psycopg.errors.LockNotAvailable,
            psycopg.errors.SerializationFailure,
            psycopg.errors.AdminShutdown,
        )
        if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.InvalidCatalogName):
            return False
        return isinstance(exc, transient)

    def _driver_errors(self) -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.Error,)

    def _describe(self, exc: BaseException | None) -> str:
        text = str(exc).strip().splitlines()[0] if exc is not None and str(exc).strip() else type(exc).__name__
        return f"postgres sink ({self._where_text()}, conn id {self.conn_id}): {one_line(text, self._secrets())}"

    def _begin(self, cur: Any, write: bool) -> None:
        """psycopg opens the transaction with the first statement (autocommit is off)."""

    @contextlib.contextmanager
    def _schema_lock(self, cur: Any) -> Iterator[None]:
        """Serialize migrations across processes until this transaction ends (DDL is transactional here)."""
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        yield

    def _prepare(self, table: str, spec: TableSpec | None = None) -> TableSpec:
        """As SqlStore's, but a new ``klines_<tf>`` table is created under the schema lock: two processes racing
        on ``CREATE TABLE IF NOT EXISTS`` would otherwise collide on the catalog's unique index."""
        spec = spec_for(table) if spec is None else spec
        if not self._schema_ok:
            self.ensure_schema()
        if table not in self._tables:

            def run(cur: Any) -> None:
                with self._schema_lock(cur):
                    cur.execute(self._create_table_sql(spec))

            self._tx(run)
            self._tables.add(table)
        return spec

    def write_block(self, dataset: Dataset, block: KlineBlock) -> int:
        """One archive file: ``COPY`` into a session staging table, then ``INSERT ... ON CONFLICT DO UPDATE`` from
        it, in one transaction (the stage empties itself at commit; a rollback leaves nothing anywhere)."""
        check_block(dataset, block)
        if not len(block):
            return 0
        spec = self._ready(dataset)
        table = spec.name
        data = block.csv_bytes()
        stage = f"_bx_stage_{table}"
        cols = ", ".join(f'"{c}"' for c in spec.column_names)

        def run(cur: Any) -> int:
            if self._range_empty(cur, spec, block):  # history: straight in, at raw COPY speed
                import psycopg

                try:
                    # a savepoint: a racing writer's rows undo only the COPY
                    direct = f'COPY "{table}" ({cols}) FROM STDIN (FORMAT csv)'
                    with cur.connection.transaction(), cur.copy(direct) as copy:
                        copy.write(data)
                    return len(block)
                except psycopg.errors.UniqueViolation:
                    pass  # someone stored some of these meanwhile: the upsert below converges
            cur.execute(f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" (LIKE "{table}") ON COMMIT DELETE ROWS')
            with cur.copy(f'COPY "{stage}" ({cols}) FROM STDIN (FORMAT csv)') as copy:
                copy.write(data)
            cur.execute(bulk_upsert_sql(spec, stage))
            return len(block)

        return self._tx(run)

    def _range_empty(self, cur: Any, spec: TableSpec, block: KlineBlock) -> bool:
        """No stored candle of the block's symbol between its first and last open time (one index probe): then
        ``COPY`` goes straight into the table, skipping the stage and the set-based upsert's second pass."""
        from binance_extractor.timeutil import ms_to_dt

        opens = block.columns["open_time"]
        lo, hi = (ms_to_dt(int(opens[i].as_py())) for i in (0, len(block) - 1))
        cur.execute(
            f'SELECT 1 FROM "{spec.name}" WHERE symbol = %s AND "{spec.time_column}" BETWEEN %s AND %s LIMIT 1',
            (block.symbol, lo, hi),
        )
        return cur.fetchone() is None

    def ms_between_sql(self, a: str, b: str) -> str:
        return f"(FLOOR(EXTRACT(EPOCH FROM ({b} - {a})) * 1000)::BIGINT)"  # TIMESTAMPTZ(3)

    def _create_table_sql(self, spec: TableSpec) -> str:
        cols = [self._column_sql(c) for c in spec.columns]
        key = ", ".join(f'"{k}"' for k in spec.key)
        return f'CREATE TABLE IF NOT EXISTS "{spec.name}" ({", ".join(cols)}, PRIMARY KEY ({key}))'

    def _column_sql(self, column: Column) -> str:
        kind = _TYPES[column.type].format(n=column.length or 255)
        return f'"{column.name}" {kind}{"" if column.nullable else " NOT NULL"}'

    def _text_sql(self, column: str) -> str:
        return f"{column}::text"

    def _ms_sql(self, column: str) -> str:
        return f"(EXTRACT(EPOCH FROM {column}) * 1000)::bigint"  # numeric: exact at TIMESTAMPTZ(3)

    def _table_names_sql(self) -> str:
        return "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"

    def _index_exists(self, cur: Any, index: Index) -> bool:
        cur.execute(
            "SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = %s LIMIT 1", (index.name,)
        )
        return cur.fetchone() is not None

    def _to_db(self, type_: ColType, value: Any) -> Any:
        if type_ == "time":
            return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return value

    def _from_db(self, type_: ColType, value: Any) -> Any:
        if type_ == "time":
            return value.astimezone(UTC) if isinstance(value, datetime) else value
        if type_ == "bool":
            return bool(value)
        if type_ == "int":
            return int(value)
        return value
