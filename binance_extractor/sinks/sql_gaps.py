"""Gap detection on the SQL stores: ``LAG``/``LEAD`` window functions (MySQL/MariaDB, PostgreSQL, SQLite 3.25+).

Only the pairs around a hole come back; the dialect differences (millisecond distance, LEAST/GREATEST) are
the store's own ``ms_between_sql``, ``least_sql`` and ``greatest_sql``. The store is typed as ``SqlQueries``: the
few public members asked for, so this module needs nothing from ``sql.py`` (which imports it).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from binance_extractor.kinds import Dataset
from binance_extractor.sinks.gap_dialect import FAR, FUNDING_NEIGHBOURS, FundingPair, GapQueries
from binance_extractor.sinks.schema import TableSpec
from binance_extractor.timeutil import dt_to_ms, ms_to_dt


class SqlQueries(Protocol):
    """What the SQL gap dialect asks of a store (all public; ``sql_core.SqlCore`` has them)."""

    ph: str  # the placeholder
    least_sql: str
    greatest_sql: str

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def quote(self, name: str) -> str: ...

    def table_spec(self, dataset: Dataset) -> TableSpec: ...

    def db_time(self, value: datetime) -> Any: ...

    def py_time(self, value: Any) -> datetime: ...

    def ms_between_sql(self, a: str, b: str) -> str: ...


class SqlGapQueries(GapQueries):
    """Window-function queries through a SQL store's ``query`` (its connection, transactions and retries)."""

    def __init__(self, sink: SqlQueries) -> None:
        self.sink = sink

    def _t(self, ms: int) -> Any:
        return self.sink.db_time(ms_to_dt(ms))

    def _ms(self, value: Any) -> int:
        return dt_to_ms(self.sink.py_time(value))

    def _diff(self, a: str, b: str) -> str:
        return self.sink.ms_between_sql(a, b)

    def _rows(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self.sink.query(sql, args)

    def _names(self, dataset: Dataset) -> tuple[str, str, str]:
        spec = self.sink.table_spec(dataset)
        q = self.sink.quote
        return q(spec.name), q(spec.time_column or ""), q(spec.order_column)

    def stats(self, dataset: Dataset, symbol: str, lo: int, hi: int) -> tuple[int, int | None, int | None]:
        """Rows with key time in [lo, hi): count, smallest and largest key (time, or agg_trade_id)."""
        t, tcol, order = self._names(dataset)
        ph = self.sink.ph
        sql = (
            f"SELECT COUNT(*), MIN({order}), MAX({order}) FROM {t} "
            f"WHERE symbol = {ph} AND {tcol} >= {ph} AND {tcol} < {ph}"
        )
        n, mn, mx = self._rows(sql, [symbol, self._t(lo), self._t(hi)])[0]
        if not n:
            return 0, None, None
        if order == tcol:
            return int(n), self._ms(mn), self._ms(mx)
        return int(n), int(mn), int(mx)

    def kline_sql(self, dataset: Dataset) -> str:
        """The kline hole query (params: symbol, lo, hi, interval ms); exposed so tests can EXPLAIN it."""
        t, c, _ = self._names(dataset)
        ph = self.sink.ph
        return (
            f"SELECT prev_t, cur_t FROM (SELECT {c} AS cur_t, LAG({c}) OVER (PARTITION BY symbol ORDER BY {c}) "
            f"AS prev_t FROM {t} WHERE symbol = {ph} AND {c} >= {ph} AND {c} < {ph}) w "
            f"WHERE prev_t IS NOT NULL AND {self._diff('prev_t', 'cur_t')} > {ph} ORDER BY cur_t"
        )

    def kline_pairs(self, dataset: Dataset, symbol: str, lo: int, hi: int, step_ms: int) -> list[tuple[int, int]]:
        """(previous open, open) of consecutive stored candles further apart than one interval."""
        rows = self._rows(self.kline_sql(dataset), [symbol, self._t(lo), self._t(hi), step_ms])
        return [(self._ms(a), self._ms(b)) for a, b in rows]

    def event_pairs(
        self, dataset: Dataset, symbol: str, lo: int, hi: int, default_ms: int, tol_ms: int
    ) -> list[FundingPair]:
        """Pairs further apart than the interval in force around them (see ``FundingPair``)."""
        t, c, _ = self._names(dataset)
        ph = self.sink.ph
        w = f"OVER (PARTITION BY symbol ORDER BY {c})"
        least, greatest = self.sink.least_sql, self.sink.greatest_sql
        shifted = ", ".join(f"LAG({c}, {k}) {w} AS b{k}" for k in range(1, FUNDING_NEIGHBOURS + 2))
        shifted += ", " + ", ".join(f"LEAD({c}, {k}) {w} AS a{k}" for k in range(1, FUNDING_NEIGHBOURS + 1))
        cols = ["cur_t", *(f"a{k}" for k in range(1, FUNDING_NEIGHBOURS + 1))]
        after = [self._diff(x, y) for x, y in itertools.pairwise(cols)]
        cols = [f"b{k}" for k in range(FUNDING_NEIGHBOURS + 1, 0, -1)]
        before = [self._diff(x, y) for x, y in itertools.pairwise(cols)]
        eb = f"{least}({', '.join(f'COALESCE({d}, {FAR})' for d in before)})"
        ea = f"{least}({', '.join(f'COALESCE({d}, {FAR})' for d in after)})"
        expected = (
            f"CASE WHEN eb >= {FAR} AND ea >= {FAR} THEN {int(default_ms)} WHEN eb >= {FAR} THEN ea "
            f"WHEN ea >= {FAR} THEN eb ELSE {greatest}(eb, ea) END"
        )
        last = f"b{FUNDING_NEIGHBOURS + 1}"
        sql = (
            f"SELECT first_t, prev_t, cur_t, last_t, expected FROM (SELECT {last} AS first_t, b1 AS prev_t, cur_t, "
            f"a{FUNDING_NEIGHBOURS} AS last_t, {expected} AS expected, gap FROM (SELECT *, {eb} AS eb, {ea} AS ea, "
            f"{self._diff('b1', 'cur_t')} AS gap FROM (SELECT {c} AS cur_t, {shifted} FROM {t} "
            f"WHERE symbol = {ph} AND {c} >= {ph} AND {c} < {ph}) w) x) y "
            f"WHERE prev_t IS NOT NULL AND gap > expected + {int(tol_ms)} ORDER BY cur_t"
        )
        out: list[FundingPair] = []
        for first, a, b, last_t, expected_ms in self._rows(sql, [symbol, self._t(lo), self._t(hi)]):
            prev, cur = self._ms(a), self._ms(b)
            ctx = (prev if first is None else self._ms(first), cur if last_t is None else self._ms(last_t))
            out.append(FundingPair(prev, cur, int(expected_ms), ctx))
        return out

    def id_pairs(self, dataset: Dataset, symbol: str, lo: int, hi: int) -> list[tuple[int, int, int, int]]:
        """(previous id, id, previous time, time) where ids are not consecutive."""
        t, c, i = self._names(dataset)  # quoted: the table, its time column and its id
        ph = self.sink.ph
        w = f"OVER (PARTITION BY symbol ORDER BY {i})"
        sql = (
            f"SELECT prev_id, cur_id, prev_t, cur_t FROM (SELECT {i} AS cur_id, {c} AS cur_t, LAG({i}) {w} AS prev_id, "
            f"LAG({c}) {w} AS prev_t FROM {t} WHERE symbol = {ph} AND {c} >= {ph} AND {c} < {ph}) w "
            "WHERE prev_id IS NOT NULL AND cur_id - prev_id > 1 ORDER BY cur_id"
        )
        rows = self._rows(sql, [symbol, self._t(lo), self._t(hi)])
        return [(int(a), int(b), self._ms(pt), self._ms(ct)) for a, b, pt, ct in rows]
