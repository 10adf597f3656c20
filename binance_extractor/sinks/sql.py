"""What the SQL stores share above their core (``sql_core.py``): reads, the run audit, the gap ledger, retention,
and the gap dialect (``sql_gaps.py``); ``ServerSqlStore`` for the stores on a database server.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from binance_extractor.catalog import AUDIT_TABLE, LEDGER_TABLE
from binance_extractor.sinks.base import GapRecord, RunRecord, is_data_table, utc_ms
from binance_extractor.sinks.schema import TableSpec, spec_for
from binance_extractor.sinks.sql_core import SqlCore
from binance_extractor.sinks.sql_gaps import SqlGapQueries

if TYPE_CHECKING:
    import pyarrow as pa

    from binance_extractor.kinds import Dataset


class SqlStore(SqlCore):
    """A DB-API store: reads, audit, ledger and retention over ``SqlCore``'s connection and transactions."""

    def gap_queries(self) -> SqlGapQueries:
        return SqlGapQueries(self)

    # ---- reads -------------------------------------------------------------------------------------
    def _where(
        self, spec: TableSpec, symbol: str | None, start: datetime | None, end: datetime | None
    ) -> tuple[str, list[Any]]:
        conds, args = [], []
        if symbol is not None:
            conds.append(f"symbol = {self.ph}")
            args.append(symbol)
        tcol = self._q(spec.time_column or spec.order_column)
        if start is not None:
            conds.append(f"{tcol} >= {self.ph}")
            args.append(self._to_db("time", utc_ms(start)))
        if end is not None:
            conds.append(f"{tcol} < {self.ph}")
            args.append(self._to_db("time", utc_ms(end)))
        return (" WHERE " + " AND ".join(conds)) if conds else "", args

    def _edge_time(self, dataset: Dataset, symbol: str, direction: str) -> datetime | None:
        spec = self._ready(dataset)
        tcol = self._q(spec.time_column or "")
        order = self._q(spec.order_column)
        sql = f"SELECT {tcol} FROM {self._q(spec.name)} WHERE symbol = {self.ph} ORDER BY {order} {direction} LIMIT 1"

        def run(cur: Any) -> datetime | None:
            cur.execute(sql, (symbol,))
            row = cur.fetchone()
            return None if row is None else self._from_db("time", row[0])

        return self._tx(run, write=False)

    def last_time_sql(self, dataset: Dataset) -> str:
        """The statement last_time runs (exposed so tests can EXPLAIN it)."""
        spec = dataset.spec
        return (
            f"SELECT {self._q(spec.time_column or '')} FROM {self._q(spec.name)} WHERE symbol = {self.ph} "
            f"ORDER BY {self._q(spec.order_column)} DESC LIMIT 1"
        )

    def last_time(self, dataset: Dataset, symbol: str) -> datetime | None:
        return self._edge_time(dataset, symbol, "DESC")

    def first_time(self, dataset: Dataset, symbol: str) -> datetime | None:
        return self._edge_time(dataset, symbol, "ASC")

    def count(
        self, dataset: Dataset, symbol: str | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> int:
        spec = self._ready(dataset)
        where, args = self._where(spec, symbol, start, end)

        def run(cur: Any) -> int:
            cur.execute(f"SELECT COUNT(*) FROM {self._q(spec.name)}{where}", args)
            return int(cur.fetchone()[0])

        return self._tx(run, write=False)

    def _select(self, spec: TableSpec, where: str, args: Sequence[Any], order: str) -> list[dict[str, Any]]:
        cols = ", ".join(self._q(c) for c in spec.column_names)
        sql = f"SELECT {cols} FROM {self._q(spec.name)}{where} ORDER BY {order}"
        types = [(c.name, c.type) for c in spec.columns]
        from_db = self._from_db

        def run(cur: Any) -> list[dict[str, Any]]:
            cur.execute(sql, list(args))
            return [
                {name: (None if v is None else from_db(t, v)) for (name, t), v in zip(types, row, strict=True)}
                for row in cur.fetchall()
            ]

        return self._tx(run, write=False)

    def _text_sql(self, column: str) -> str:
        """A decimal column as its exact text (SQLite keeps TEXT already)."""
        return column

    def _ms_sql(self, column: str) -> str:
        """A time column as epoch milliseconds (SQLite keeps INTEGER ms already)."""
        return column

    def read_columns(
        self, dataset: Dataset, symbol: str, start: datetime | None = None, end: datetime | None = None
    ) -> pa.Table:
        """One statement that already yields text decimals and epoch-ms times: no Python object per value."""
        from binance_extractor.sinks.columns import from_values

        spec = self._ready(dataset)
        where, args = self._where(spec, symbol, start, end)
        exprs = {"dec": self._text_sql, "time": self._ms_sql}
        cols = ", ".join(exprs.get(c.type, str)(self._q(c.name)) for c in spec.columns)
        sql = f"SELECT {cols} FROM {self._q(spec.name)}{where} ORDER BY {self._q(spec.order_column)}"

        def run(cur: Any) -> list[Any]:
            cur.execute(sql, list(args))
            return list(cur.fetchall())

        rows = self._tx(run, write=False)
        return from_values(spec, [list(map(itemgetter(i), rows)) for i in range(len(spec.columns))])

    def read(
        self, dataset: Dataset, symbol: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[dict[str, Any]]:
        spec = self._ready(dataset)
        where, args = self._where(spec, symbol, start, end)
        rows = self._select(spec, where, args, self._q(spec.order_column))
        if dataset.timeframe is not None:
            interval = dataset.timeframe.interval
            for r in rows:
                r["interval"] = interval
        return rows

    # ---- audit and gap ledger ----------------------------------------------------------------------
    def _upsert_dict(self, table: str, values: dict[str, Any]) -> None:
        spec = self._prepare(table)
        sql = self._upsert_sql(spec)
        types = {c.name: c.type for c in spec.columns}
        row = tuple(None if values[c] is None else self._to_db(types[c], values[c]) for c in spec.column_names)
        self._tx(lambda cur: cur.execute(sql, row))

    def _upsert_dicts(self, table: str, rows: Sequence[dict[str, Any]]) -> int:
        """Many bookkeeping rows in one transaction, through the same batched statement as ``write``."""
        if not rows:
            return 0
        spec = self._prepare(table)
        sql = self._upsert_sql(spec)
        types = [(c.name, c.type) for c in spec.columns]
        return self._write_params(
            table, sql, [tuple(None if r[c] is None else self._to_db(t, r[c]) for c, t in types) for r in rows]
        )

    def record_runs(self, runs: Sequence[RunRecord]) -> int:
        return self._upsert_dicts(AUDIT_TABLE, [r.as_row() for r in runs])

    def record_gaps(self, gaps: Sequence[GapRecord]) -> int:
        for gap in gaps:
            spec_for(gap.table)
        return self._upsert_dicts(LEDGER_TABLE, [g.as_row() for g in gaps])

    def runs_page(self, after: str | None, limit: int) -> list[RunRecord]:
        spec = self._prepare(AUDIT_TABLE)
        where, args = ("", []) if after is None else (f" WHERE {self._q('run_id')} > {self.ph}", [after])
        rows = self._select(spec, where, args, f"{self._q('run_id')} LIMIT {int(limit)}")
        return [RunRecord.from_row(r) for r in rows]

    def gaps_page(self, after: tuple[str, str, datetime] | None, limit: int) -> list[GapRecord]:
        spec = self._prepare(LEDGER_TABLE)
        q, ph = self._q, self.ph
        where, args = "", []
        if after is not None:
            table, symbol, start = after
            where = (
                f" WHERE {q('table_name')} > {ph} OR ({q('table_name')} = {ph} AND ({q('symbol')} > {ph} "
                f"OR ({q('symbol')} = {ph} AND {q('gap_start')} > {ph})))"
            )
            args = [table, table, symbol, symbol, self._to_db("time", utc_ms(start))]
        order = f"{q('table_name')}, {q('symbol')}, {q('gap_start')} LIMIT {int(limit)}"
        return [GapRecord.from_row(r) for r in self._select(spec, where, args, order)]

    @abstractmethod
    def _table_names_sql(self) -> str:
        """A statement listing the names of this database's tables (one column)."""

    def data_tables(self) -> list[str]:
        return sorted(r[0] for r in self.query(self._table_names_sql()) if is_data_table(r[0]))

    def record_run(self, run: RunRecord) -> None:
        self._upsert_dict(AUDIT_TABLE, run.as_row())

    def runs(self, limit: int = 100) -> list[RunRecord]:
        spec = self._prepare(AUDIT_TABLE)
        rows = self._select(spec, "", [], f"{self._q('started_at')} DESC LIMIT {int(limit)}")
        return [RunRecord.from_row(r) for r in rows]

    def has_success(self, dataset: Dataset, symbol: str) -> bool:
        self._prepare(AUDIT_TABLE)
        ph = self.ph
        sql = (
            f"SELECT 1 FROM {self._q('extraction_runs')} WHERE {self._q('table_name')} = {ph} AND symbol = {ph} "
            f"AND outcome = {ph} LIMIT 1"
        )

        def run(cur: Any) -> bool:
            cur.execute(sql, (dataset.table, symbol, "success"))
            return cur.fetchone() is not None

        return self._tx(run, write=False)

    def record_gap(self, gap: GapRecord) -> None:
        spec_for(gap.table)
        self._upsert_dict(LEDGER_TABLE, gap.as_row())

    def gap_records(self, dataset: Dataset | None = None, symbol: str | None = None) -> list[GapRecord]:
        spec = self._prepare(LEDGER_TABLE)
        conds, args = [], []
        table = None if dataset is None else dataset.table
        for column, value in (("table_name", table), ("symbol", symbol)):
            if value is not None:
                conds.append(f"{self._q(column)} = {self.ph}")
                args.append(value)
        where = (" WHERE " + " AND ".join(conds)) if conds else ""
        order = ", ".join(self._q(c) for c in ("table_name", "symbol", "gap_start"))
        return [GapRecord.from_row(r) for r in self._select(spec, where, args, order)]

    def delete_gap(self, dataset: Dataset, symbol: str, gap_start: datetime) -> None:
        self._prepare(LEDGER_TABLE)
        q, ph = self._q, self.ph
        where = f"{q('table_name')} = {ph} AND {q('symbol')} = {ph} AND {q('gap_start')} = {ph}"
        sql = f"DELETE FROM {q('gap_ledger')} WHERE {where}"
        when = self._to_db("time", utc_ms(gap_start))
        self._tx(lambda cur: cur.execute(sql, (dataset.table, symbol, when)))

    def recent_runs(self, dataset: Dataset, symbol: str, limit: int) -> list[RunRecord]:
        """Through the (table_name, symbol, started_at) index, newest first."""
        q, ph = self._q, self.ph
        spec = spec_for(AUDIT_TABLE)
        cols = ", ".join(q(c) for c in spec.column_names)
        sql = (
            f"SELECT {cols} FROM {q('extraction_runs')} WHERE {q('table_name')} = {ph} AND {q('symbol')} = {ph} "
            f"ORDER BY {q('started_at')} DESC LIMIT {int(limit)}"
        )
        types = [(c.name, c.type) for c in spec.columns]
        out = []
        for row in self.query(sql, (dataset.table, symbol)):
            pairs = zip(types, row, strict=True)
            values = {name: (None if v is None else self._from_db(t, v)) for (name, t), v in pairs}
            out.append(RunRecord.from_row(values))
        return out

    def stored_symbols(self, dataset: Dataset) -> list[str]:
        """By index seeks (``symbol > previous ORDER BY symbol LIMIT 1``, one per symbol).

        ``SELECT DISTINCT symbol`` is a full index scan on MariaDB; this stays a handful of seeks at any size.
        """
        q, ph, table = self._q, self.ph, dataset.table
        first = f"SELECT {q('symbol')} FROM {q(table)} ORDER BY {q('symbol')} LIMIT 1"
        after = f"SELECT {q('symbol')} FROM {q(table)} WHERE {q('symbol')} > {ph} ORDER BY {q('symbol')} LIMIT 1"
        self._ready(dataset)  # creates the schema / a new klines table on first use
        out: list[str] = []
        row = self.query(first)
        while row:
            out.append(row[0][0])
            row = self.query(after, (out[-1],))
        return out

    # ---- retention ---------------------------------------------------------------------------------
    def symbols(self, dataset: Dataset) -> list[str]:
        spec = self._ready(dataset)

        def run(cur: Any) -> list[str]:
            cur.execute(f"SELECT DISTINCT symbol FROM {self._q(spec.name)} ORDER BY symbol")
            return [r[0] for r in cur.fetchall()]

        return self._tx(run, write=False)

    def _delete_sql(self, spec: TableSpec, limit: int) -> str:
        """DELETE of at most ``limit`` rows of one symbol with key time < cutoff (params: symbol, cutoff).

        SQLite and PostgreSQL have no ``DELETE ... LIMIT``, so the rows are picked by ``row_id`` in a bounded
        subquery; MySQL overrides this with its own ``LIMIT``.
        """
        t, rid, ph = self._q(spec.name), self.row_id, self.ph
        return (
            f"DELETE FROM {t} WHERE {rid} IN (SELECT {rid} FROM {t} WHERE symbol = {ph} "
            f"AND {self._q(spec.time_column or '')} < {ph} LIMIT {int(limit)})"
        )

    def _delete_symbol_before(self, dataset: Dataset, symbol: str, cutoff: datetime, limit: int) -> int:
        sql = self._delete_sql(self._ready(dataset), limit)
        when = self._to_db("time", utc_ms(cutoff))

        def run(cur: Any) -> int:
            cur.execute(sql, (symbol, when))
            return int(cur.rowcount)

        return self._tx(run)


class ServerSqlStore(SqlStore):
    """A SQL store behind an Airflow hook on a database server (MySQL, PostgreSQL): where it is, and what to mask.

    Error texts name the server and never the password, whatever the dialect.
    """

    conn_id: str
    default_port = 0

    def _hook(self) -> Any:
        raise NotImplementedError

    def _where_text(self) -> str:
        try:
            c = self._hook().connection
            return f"{c.host or 'localhost'}:{c.port or self.default_port}/{c.schema or ''}"
        except Exception:
            return self.conn_id

    def _secrets(self) -> list[str | None]:
        try:
            return [self._hook().connection.password]
        except Exception:
            return []
