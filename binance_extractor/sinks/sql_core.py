"""The SQL stores' core: one connection, transactions with retries, migrations, writes and raw reads.

Dialect classes (SQLite, MySQL, PostgreSQL) fill in placeholders, quoting, DDL, value conversion and which driver
errors are transient; ``sql.py`` builds the reads, the audit and the ledger on top. The public members here
(``query``, ``quote``, ``table_spec``, ``db_time``, ``py_time``, ``ms_between_sql``, ``ph``, ``least_sql``,
``greatest_sql``) are what the gap dialect (``sql_gaps.SqlQueries``) asks for.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypeVar

from binance_extractor import clock
from binance_extractor.sinks.base import (
    Row,
    Store,
    call_with_retry,
    check_rows,
    retry_attempts,
    utc_ms,
)
from binance_extractor.sinks.schema import (
    MIGRATIONS,
    SCHEMA_TABLE,
    ColType,
    Column,
    Index,
    Migration,
    TableSpec,
    spec_for,
)

if TYPE_CHECKING:
    from binance_extractor.kinds import Dataset

T = TypeVar("T")


class SqlCore(Store):
    """A DB-API store's core: one connection, one transaction per call, retried on transient errors."""

    ph = "%s"
    insert_ignore = "INSERT IGNORE"  # records a migration version once even if a racing writer got there first
    insert_ignore_suffix = ""  # PostgreSQL spells it at the end: ON CONFLICT DO NOTHING
    batch_size = 5000
    least_sql = "LEAST"  # SQLite spells the scalar forms MIN/MAX
    greatest_sql = "GREATEST"
    row_id: str  # the physical row id a bounded DELETE picks rows by: SQLite rowid, PostgreSQL ctid (not MySQL)

    def __init__(self, retry_attempts_: int | None = None, retry_max_wait: float = 8.0) -> None:
        self._conn: Any = None
        self._tables: set[str] = set()
        self._schema_ok = False
        self._attempts = retry_attempts(retry_attempts_)
        self._max_wait = retry_max_wait
        self._writers: dict[str, tuple[str, Callable[[Any], tuple[Any, ...]]]] = {}

    # ---- dialect hooks -------------------------------------------------------------------------------
    @abstractmethod
    def _connect(self) -> Any: ...

    @abstractmethod
    def _transient(self, exc: BaseException) -> bool: ...

    @abstractmethod
    def _driver_errors(self) -> tuple[type[BaseException], ...]: ...

    @abstractmethod
    def _describe(self, exc: BaseException | None) -> str: ...

    @abstractmethod
    def _create_table_sql(self, spec: TableSpec) -> str: ...

    @abstractmethod
    def _column_sql(self, column: Column) -> str:
        """One column's definition (name, type, NULL-ness) as CREATE TABLE and ALTER TABLE take it."""

    @abstractmethod
    def _index_exists(self, cur: Any, index: Index) -> bool: ...

    def _upsert_sql(self, spec: TableSpec) -> str:
        """``INSERT ... ON CONFLICT (key) DO UPDATE``, which SQLite and PostgreSQL share (MySQL overrides it)."""
        q = self._q
        cols = ", ".join(q(c) for c in spec.column_names)
        marks = ", ".join(self.ph for _ in spec.columns)
        key = ", ".join(q(k) for k in spec.key)
        sets = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in spec.column_names if c not in spec.key)
        return f"INSERT INTO {q(spec.name)} ({cols}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {sets}"

    @abstractmethod
    def _to_db(self, type_: ColType, value: Any) -> Any: ...

    @abstractmethod
    def _from_db(self, type_: ColType, value: Any) -> Any: ...

    def _after_batch(self, cur: Any, table: str) -> None:
        """Check one executed batch (MySQL: a value the column had to round is an error, not a note)."""

    def _write_batch(self, cur: Any, table: str, sql: str, params: list[tuple[Any, ...]]) -> None:
        """Upsert one batch of converted rows (MySQL builds its own multi-row statement)."""
        cur.executemany(sql, params)
        self._after_batch(cur, table)

    def _write_converter(self, type_: ColType) -> Callable[[Any], Any] | None:
        """Fast converter of a model value (aware UTC datetime, Decimal, bool) for writes; None = as is."""
        return None

    @abstractmethod
    def _begin(self, cur: Any, write: bool) -> None: ...

    @contextlib.contextmanager
    def _schema_lock(self, cur: Any) -> Iterator[None]:
        yield

    def _q(self, name: str) -> str:
        return f'"{name}"'

    def quote(self, name: str) -> str:
        """A table or column name quoted for this dialect."""
        return self._q(name)

    # ---- connection and transactions -----------------------------------------------------------------
    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _tx(self, fn: Callable[[Any], T], write: bool = True) -> T:
        """Run ``fn(cursor)`` in one transaction (commit, or rollback and raise), with retries."""

        def attempt() -> T:
            conn = self._connection()
            cur = conn.cursor()
            try:
                self._begin(cur, write)
                result = fn(cur)
                conn.commit()
                return result
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.rollback()
                raise
            finally:
                with contextlib.suppress(Exception):
                    cur.close()

        return call_with_retry(
            attempt,
            transient=self._transient,
            persistent=self._driver_errors(),
            reset=self._reset,
            describe=self._describe,
            attempts=self._attempts,
            max_wait=self._max_wait,
        )

    def close(self) -> None:
        self._reset()

    # ---- schema ------------------------------------------------------------------------------------
    def ensure_schema(self, target: int | None = None) -> None:
        """Apply every migration above the stored version (up to ``target``, for tests of old versions)."""

        def run(cur: Any) -> None:
            with self._schema_lock(cur):
                cur.execute(self._create_table_sql(_MIGRATIONS_SPEC))
                cur.execute(f"SELECT version FROM {self._q(SCHEMA_TABLE)}")
                done = {int(r[0]) for r in cur.fetchall()}
                for mig in MIGRATIONS:
                    if mig.version in done or (target is not None and mig.version > target):
                        continue
                    self._apply(cur, mig)
                    cur.execute(  # idempotent: the lock is released before this transaction commits
                        f"{self.insert_ignore} INTO {self._q(SCHEMA_TABLE)} (version, name, applied_at) "
                        f"VALUES ({self.ph}, {self.ph}, {self.ph}){self.insert_ignore_suffix}",
                        (mig.version, mig.name, self._to_db("time", clock.now())),
                    )

        self._tx(run)
        self._schema_ok = target is None

    def _apply(self, cur: Any, mig: Migration) -> None:
        for table in mig.tables:
            cur.execute(self._create_table_sql(spec_for(table)))
            self._tables.add(table)
        for index in mig.indexes:
            if not self._index_exists(cur, index):
                cols = ", ".join(self._q(c) for c in index.columns)
                cur.execute(f"CREATE INDEX {self._q(index.name)} ON {self._q(index.table)} ({cols})")
        for table, name in mig.columns:
            if name not in self._column_names(cur, table):
                (column,) = [c for c in spec_for(table).columns if c.name == name]
                cur.execute(f"ALTER TABLE {self._q(table)} ADD COLUMN {self._column_sql(column)}")
        for table, name, value in mig.fills:
            q = self._q
            cur.execute(f"UPDATE {q(table)} SET {q(name)} = {self.ph} WHERE {q(name)} IS NULL", (value,))

    def _column_names(self, cur: Any, table: str) -> set[str]:
        """The columns ``table`` has now (from the driver's description of an empty result)."""
        cur.execute(f"SELECT * FROM {self._q(table)} WHERE 1 = 0")
        names = {str(d[0]) for d in cur.description}
        cur.fetchall()
        return names

    def schema_version(self) -> int:
        def run(cur: Any) -> int:
            cur.execute(f"SELECT MAX(version) FROM {self._q(SCHEMA_TABLE)}")
            row = cur.fetchone()
            return int(row[0] or 0)

        return self._tx(run, write=False)

    def table_spec(self, dataset: Dataset) -> TableSpec:
        """The spec of ``dataset``'s table, created if this is its first use (what queries over it need)."""
        return self._ready(dataset)

    def _ready(self, dataset: Dataset) -> TableSpec:
        """``dataset``'s table spec (from the catalog, no name parsed), the table created on first use."""
        return self._prepare(dataset.table, dataset.spec)

    def _prepare(self, table: str, spec: TableSpec | None = None) -> TableSpec:
        """Validate the table name (unless its spec is given); create the schema or a new ``klines_<tf>`` table
        on first use."""
        spec = spec_for(table) if spec is None else spec
        if not self._schema_ok:
            self.ensure_schema()
        if table not in self._tables:
            self._tx(lambda cur: cur.execute(self._create_table_sql(spec)))
            self._tables.add(table)
        return spec

    # ---- writes ------------------------------------------------------------------------------------
    def _writer(self, spec: TableSpec) -> tuple[str, Callable[[Any], tuple[Any, ...]]]:
        """Statement and a cheap model -> tuple converter for ``spec`` (built once per table)."""
        if spec.name in self._writers:
            return self._writers[spec.name]
        getter = attrgetter(*spec.column_names)
        fixes = [(i, fn) for i, c in enumerate(spec.columns) if (fn := self._write_converter(c.type)) is not None]

        if not fixes:

            def convert(row: Any) -> tuple[Any, ...]:
                return tuple(getter(row))

        else:

            def convert(row: Any) -> tuple[Any, ...]:
                values = list(getter(row))
                for i, fn in fixes:
                    v = values[i]
                    if v is not None:
                        values[i] = fn(v)
                return tuple(values)

        self._writers[spec.name] = (self._upsert_sql(spec), convert)
        return self._writers[spec.name]

    def write(self, dataset: Dataset, rows: Sequence[Row]) -> int:
        if not rows:
            return 0
        check_rows(dataset, rows)
        spec = self._ready(dataset)
        sql, convert = self._writer(spec)
        return self._write_params(spec.name, sql, [convert(r) for r in rows])

    def _write_params(self, table: str, sql: str, params: list[tuple[Any, ...]]) -> int:
        """Converted rows in batches of ``batch_size``, all in one transaction."""
        size = self.batch_size

        def run(cur: Any) -> int:
            for i in range(0, len(params), size):
                self._write_batch(cur, table, sql, params[i : i + size])
            return len(params)

        return self._tx(run)

    # ---- raw reads for other modules (gap detection) ------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read-only statement (placeholders: ``self.ph``) with the sink's retries; rows as tuples.

        Times come back in the store's own form: convert them with ``py_time`` (and pass ``db_time`` values in).
        """

        def run(cur: Any) -> list[tuple[Any, ...]]:
            cur.execute(sql, list(params))
            return [tuple(r) for r in cur.fetchall()]

        return self._tx(run, write=False)

    def ms_between_sql(self, a: str, b: str) -> str:
        """SQL for the milliseconds from time expression ``a`` to ``b`` (SQLite keeps epoch ms)."""
        return f"({b} - {a})"

    def db_time(self, value: datetime) -> Any:
        """An aware datetime as this store keeps it (MySQL naive UTC DATETIME, SQLite epoch ms)."""
        return self._to_db("time", utc_ms(value))

    def py_time(self, value: Any) -> datetime:
        return self._from_db("time", value)


_MIGRATIONS_SPEC = TableSpec(
    SCHEMA_TABLE,
    (Column("version", "int"), Column("name", "str", length=100), Column("applied_at", "time")),
    ("version",),
    None,
    "version",
)
