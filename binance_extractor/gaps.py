"""Holes in stored market data: detection in the database, weekly chunks, repair, closure check and ledger.

Why it exists: failed runs, our own outages and late listings leave holes that incremental runs never revisit,
while the exchange's own outages leave holes nobody can fill. The gap filler finds both, repairs the first kind
and remembers the second (``gap_ledger``) so they are not fetched again every night.

Detection never loads a table into Python: consecutive keys are compared inside the database with
``LAG(...) OVER (PARTITION BY symbol ORDER BY key)`` (MySQL/MariaDB, SQLite 3.25+) or ``$setWindowFields`` with
``$shift`` (MongoDB); only the pairs around a hole come back.

- klines (``klines_<tf>``): a hole is a run of missing candle open times between the first stored candle (or
  ``--start`` / the listing date with ``full_history``) and the last closed candle.
- funding (``funding_rates``): intervals are 1h, 4h or 8h per contract and time, so a hole is a distance between
  consecutive funding times larger than the interval in force around it plus a tolerance (``FundingPair``).
- aggregate trades (``agg_trades``): ids are consecutive, so a hole is ``LAG(agg_trade_id) + 1 != agg_trade_id``;
  it is repaired by refetching the time range between its two neighbours.

All ranges are half-open ``[start, end)`` in epoch milliseconds on the key time.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from binance_extractor import clock, config, telemetry, timeframes
from binance_extractor.errors import ExtractorError, InputError
from binance_extractor.timeutil import dt_to_ms, iso, ms_to_dt, now_ms, parse_time

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MONDAY_MS = 4 * DAY_MS  # 1970-01-05 was a Monday: weekly chunks start on Mondays 00:00 UTC
MAX_MAP_LENGTH = 1024  # Airflow's default [core] max_map_length
FUNDING_DEFAULT_MS = 8 * HOUR_MS  # the longest funding interval: used when the previous one is unknown
FUNDING_NEIGHBOURS = 8  # funding pairs on each side of a pair that tell the interval in force around it
_FAR = 10**15  # "no such neighbour" in the funding queries (larger than any distance in ms)
DB_SINKS = ("sqlite", "mysql", "postgres", "mongo")
STATES = ("found", "filled", "confirmed", "remaining")
GAP_TABLES = "klines_<tf>, funding_rates or agg_trades"


@dataclass(frozen=True)
class FundingPair:
    """Two consecutive funding times further apart than the interval in force around them.

    That interval is the larger of the shortest distance among the ``FUNDING_NEIGHBOURS`` pairs before and the
    shortest among those after (one side at the range's edges, 8 h when alone): a hole right after another hole
    (up to eight in a row) still has regular pairs on both sides, and a change of the contract's interval
    (8 h -> 4 h -> 1 h, or back) is not a hole on either side of it. ``ctx`` spans those neighbours, so
    re-detection sees them too.
    """

    prev: int
    cur: int
    interval: int
    ctx: tuple[int, int]


class GapClosureError(ExtractorError):
    """A hole the exchange has (or may have) data for is still open after the fill."""


# --------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class GapSettings:
    """``gap_filler:`` of include/config.yaml (any field can be overridden by the CLI or the DAG)."""

    min_gap: int = 1
    max_gap: int | None = None
    chunk_days: float = 7.0
    max_mapped_tasks: int = 512
    funding_tolerance_ms: int = 5 * 60_000
    lookback_days: float | None = None

    @classmethod
    def load(cls, **overrides: Any) -> GapSettings:
        raw = dict(config.settings().gap_filler)
        values: dict[str, Any] = {
            "min_gap": raw.get("min_gap_candles", 1),
            "max_gap": raw.get("max_gap_candles"),
            "chunk_days": raw.get("chunk_days", 7),
            "max_mapped_tasks": raw.get("max_mapped_tasks", 512),
            "funding_tolerance_ms": int(float(raw.get("funding_tolerance_minutes", 5)) * 60_000),
            "lookback_days": raw.get("lookback_days"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            out = cls(
                min_gap=int(values["min_gap"]),
                max_gap=None if values["max_gap"] is None else int(values["max_gap"]),
                chunk_days=float(values["chunk_days"]),
                max_mapped_tasks=int(values["max_mapped_tasks"]),
                funding_tolerance_ms=int(values["funding_tolerance_ms"]),
                lookback_days=None if values["lookback_days"] is None else float(values["lookback_days"]),
            )
        except (TypeError, ValueError):
            raise InputError(f"gap_filler settings must be numbers: {values}") from None
        if out.min_gap < 1:
            raise InputError(f"gap_filler.min_gap_candles must be at least 1, not {out.min_gap}")
        if out.max_gap is not None and out.max_gap < out.min_gap:
            raise InputError(f"gap_filler.max_gap_candles ({out.max_gap}) is below min_gap_candles ({out.min_gap})")
        if out.chunk_days <= 0:
            raise InputError(f"gap_filler.chunk_days must be positive, not {out.chunk_days}")
        if not 1 <= out.max_mapped_tasks <= MAX_MAP_LENGTH:
            raise InputError(f"gap_filler.max_mapped_tasks must be in 1..{MAX_MAP_LENGTH}, not {out.max_mapped_tasks}")
        return out

    @property
    def chunk_ms(self) -> int:
        return max(1, int(self.chunk_days * DAY_MS))


# --------------------------------------------------------------------------------------------- holes and chunks


def kind_of(table: str) -> str:
    """``klines``, ``funding`` or ``agg_trades``; other tables have no gap detection (InputError)."""
    if table.startswith("klines_"):
        from binance_extractor.sinks.schema import spec_for

        spec_for(table)  # validates the name
        return "klines"
    if table == "funding_rates":
        return "funding"
    if table == "agg_trades":
        return "agg_trades"
    raise InputError(f"no gap detection for table {table!r}: use {GAP_TABLES}")


def default_tables() -> list[str]:
    """Every scheduled kline table, funding rates and aggregate trades."""
    names = list(config.settings().timeframes) or list(timeframes.SCHEDULED)
    return [timeframes.parse(n).table for n in names] + ["funding_rates", "agg_trades"]


def parse_tables(values: Sequence[str] | None) -> list[str]:
    """``--table klines_m5,funding_rates`` (repeatable); ``m5``/``5m`` mean ``klines_m5``; default: all."""
    if not values:
        return default_tables()
    out: list[str] = []
    for value in values:
        for item in value.replace(" ", ",").split(","):
            name = item.strip()
            if not name:
                continue
            if name not in ("funding_rates", "agg_trades"):
                try:
                    name = timeframes.parse(name).table
                except InputError:
                    raise InputError(f"unknown table {name!r}: use {GAP_TABLES}") from None
            kind_of(name)
            if name not in out:
                out.append(name)
    if not out:
        raise InputError(f"no table given: use {GAP_TABLES}")
    return out


def _iso(ms: int) -> str:
    return iso(ms_to_dt(ms))


@dataclass(frozen=True, order=True)
class Hole:
    """Missing rows of one symbol: refetch ``[start_ms, end_ms)``; ``ctx`` is the range that re-detects it."""

    table: str
    symbol: str
    start_ms: int
    end_ms: int
    missing: int
    ctx_start_ms: int
    ctx_end_ms: int

    def describe(self) -> str:
        return f"{self.table} {self.symbol} [{_iso(self.start_ms)}, {_iso(self.end_ms)})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "symbol": self.symbol,
            "start": _iso(self.start_ms),
            "end": _iso(self.end_ms),
            "missing": self.missing,
            "context": [_iso(self.ctx_start_ms), _iso(self.ctx_end_ms)],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hole:
        ctx = data.get("context") or [data["start"], data["end"]]
        return cls(
            str(data["table"]),
            str(data["symbol"]),
            dt_to_ms(parse_time(str(data["start"]))),
            dt_to_ms(parse_time(str(data["end"]))),
            int(data.get("missing") or 0),
            dt_to_ms(parse_time(str(ctx[0]))),
            dt_to_ms(parse_time(str(ctx[1]))),
        )


@dataclass(frozen=True, order=True)
class Chunk:
    """One unit of repair: refetch the holes found in ``[start_ms, end_ms)`` (re-detected over ``ctx``)."""

    table: str
    symbol: str
    start_ms: int
    end_ms: int
    ctx_start_ms: int
    ctx_end_ms: int

    def spec(self) -> str:
        """``TABLE/SYMBOL/START/END[/CTX_START/CTX_END]``: the CLI's ``--chunk`` value."""
        parts = [self.table, self.symbol, _iso(self.start_ms), _iso(self.end_ms)]
        if (self.ctx_start_ms, self.ctx_end_ms) != (self.start_ms, self.end_ms):
            parts += [_iso(self.ctx_start_ms), _iso(self.ctx_end_ms)]
        return "/".join(parts)

    @classmethod
    def parse(cls, spec: str) -> Chunk:
        parts = spec.strip().split("/")
        if len(parts) not in (4, 6):
            raise InputError(f"malformed chunk {spec!r}: use TABLE/SYMBOL/START/END[/CTX_START/CTX_END]")
        table, symbol = parts[0], parts[1].upper()
        kind_of(table)
        if not symbol.isalnum():
            raise InputError(f"malformed symbol in chunk {spec!r}")
        times = [dt_to_ms(parse_time(p)) for p in parts[2:]]
        start, end = times[0], times[1]
        ctx_start, ctx_end = (times[2], times[3]) if len(times) == 4 else (start, end)
        if end <= start or ctx_end <= ctx_start or ctx_start > start or ctx_end < end:
            raise InputError(f"chunk {spec!r}: need START < END inside CTX_START < CTX_END")
        return cls(table, symbol, start, end, ctx_start, ctx_end)

    def describe(self) -> str:
        return f"{self.table} {self.symbol} [{_iso(self.start_ms)}, {_iso(self.end_ms)})"


def _next_boundary(t: int, step: int) -> int:
    """The first chunk boundary after ``t``; boundaries are multiples of ``step`` from Monday 1970-01-05."""
    return t + step - (t - MONDAY_MS) % step


def chunk_holes(holes: Iterable[Hole], chunk_ms: int) -> list[Chunk]:
    """Split every hole at the weekly (``chunk_ms``) boundaries; kline chunks stay aligned to candle opens.

    An agg-trade hole no longer than ``chunk_ms`` stays one chunk: its missing ids have no time grid, so a piece
    cut at a boundary cannot tell ids that belong after the boundary from ids the exchange never had (the piece
    would be "confirmed" exchange-side before the next chunk fills it).
    """
    chunks: list[Chunk] = []
    for hole in sorted(holes):
        tf = timeframes.parse(hole.table) if kind_of(hole.table) == "klines" else None
        if kind_of(hole.table) == "agg_trades" and hole.end_ms - hole.start_ms <= chunk_ms:
            chunks.append(
                Chunk(hole.table, hole.symbol, hole.start_ms, hole.end_ms, hole.ctx_start_ms, hole.ctx_end_ms)
            )
            continue
        cursor = hole.start_ms
        while cursor < hole.end_ms:
            nxt = min(hole.end_ms, _next_boundary(cursor, chunk_ms))
            if tf is not None:
                nxt = min(hole.end_ms, tf.ceil_ms(nxt))
            if nxt <= cursor:
                nxt = hole.end_ms
            if tf is not None:
                chunks.append(Chunk(hole.table, hole.symbol, cursor, nxt, cursor, nxt))
            else:
                chunks.append(Chunk(hole.table, hole.symbol, cursor, nxt, hole.ctx_start_ms, hole.ctx_end_ms))
            cursor = nxt
    return chunks


def group_chunks(chunks: Sequence[Chunk], max_tasks: int) -> list[list[Chunk]]:
    """At most ``max_tasks`` groups (mapped task instances) of consecutive chunks, sizes differing by <= 1."""
    if not chunks:
        return []
    cap = max(1, min(max_tasks, MAX_MAP_LENGTH))
    n_groups = min(cap, len(chunks))
    size, extra = divmod(len(chunks), n_groups)
    groups: list[list[Chunk]] = []
    i = 0
    for g in range(n_groups):
        take = size + (1 if g < extra else 0)
        groups.append(list(chunks[i : i + take]))
        i += take
    return groups


def _subtract(lo: int, hi: int, known: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``[lo, hi)`` minus the union of ``known`` ranges."""
    out: list[tuple[int, int]] = []
    cursor = lo
    for s, e in sorted(known):
        if e <= cursor or s >= hi:
            continue
        if s > cursor:
            out.append((cursor, min(s, hi)))
        cursor = max(cursor, e)
        if cursor >= hi:
            break
    if cursor < hi:
        out.append((cursor, hi))
    return out


def _merge(holes: Iterable[Hole]) -> list[Hole]:
    """Union of overlapping holes of the same (table, symbol) (several sinks may miss the same rows)."""
    out: list[Hole] = []
    for h in sorted(holes):
        last = out[-1] if out else None
        if last and (last.table, last.symbol) == (h.table, h.symbol) and h.start_ms <= last.end_ms:
            out[-1] = Hole(
                h.table,
                h.symbol,
                last.start_ms,
                max(last.end_ms, h.end_ms),
                max(last.missing, h.missing),
                min(last.ctx_start_ms, h.ctx_start_ms),
                max(last.ctx_end_ms, h.ctx_end_ms),
            )
        else:
            out.append(h)
    return out


# --------------------------------------------------------------------------------------------- database side


class _SqlBackend:
    """Window-function queries through a SqlSink's ``query`` (its connection, transactions and retries)."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.dialect = sink.name

    def _t(self, ms: int) -> Any:
        return self.sink.db_time(ms_to_dt(ms))

    def _ms(self, value: Any) -> int:
        return dt_to_ms(self.sink.py_time(value))

    def _diff(self, a: str, b: str) -> str:
        """Milliseconds from ``a`` to ``b`` (DATETIME(3) in MySQL, TIMESTAMPTZ(3) in PostgreSQL, epoch ms in SQLite)."""
        if self.dialect == "mysql":
            return f"(TIMESTAMPDIFF(MICROSECOND, {a}, {b}) DIV 1000)"
        if self.dialect == "postgres":
            return f"(FLOOR(EXTRACT(EPOCH FROM ({b} - {a})) * 1000)::BIGINT)"
        return f"({b} - {a})"

    def _rows(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self.sink.query(sql, args)

    def _names(self, table: str) -> tuple[str, str, str]:
        spec = self.sink._prepare(table)
        q = self.sink._q
        return q(table), q(spec.time_column), q(spec.order_column)

    def stats(self, table: str, symbol: str, lo: int, hi: int) -> tuple[int, int | None, int | None]:
        """Rows with key time in [lo, hi): count, smallest and largest key (time, or agg_trade_id)."""
        t, tcol, order = self._names(table)
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

    def kline_sql(self, table: str) -> str:
        """The kline hole query (params: symbol, lo, hi, interval ms); exposed so tests can EXPLAIN it."""
        t, c, _ = self._names(table)
        ph = self.sink.ph
        return (
            f"SELECT prev_t, cur_t FROM (SELECT {c} AS cur_t, LAG({c}) OVER (PARTITION BY symbol ORDER BY {c}) "
            f"AS prev_t FROM {t} WHERE symbol = {ph} AND {c} >= {ph} AND {c} < {ph}) w "
            f"WHERE prev_t IS NOT NULL AND {self._diff('prev_t', 'cur_t')} > {ph} ORDER BY cur_t"
        )

    def kline_pairs(self, table: str, symbol: str, lo: int, hi: int, step_ms: int) -> list[tuple[int, int]]:
        """(previous open, open) of consecutive stored candles further apart than one interval."""
        rows = self._rows(self.kline_sql(table), [symbol, self._t(lo), self._t(hi), step_ms])
        return [(self._ms(a), self._ms(b)) for a, b in rows]

    def funding_pairs(self, symbol: str, lo: int, hi: int, default_ms: int, tol_ms: int) -> list[FundingPair]:
        """Pairs further apart than the interval in force around them (see ``FundingPair``)."""
        t, c, _ = self._names("funding_rates")
        ph = self.sink.ph
        w = f"OVER (PARTITION BY symbol ORDER BY {c})"
        least, greatest = ("MIN", "MAX") if self.dialect == "sqlite" else ("LEAST", "GREATEST")
        shifted = ", ".join(f"LAG({c}, {k}) {w} AS b{k}" for k in range(1, FUNDING_NEIGHBOURS + 2))
        shifted += ", " + ", ".join(f"LEAD({c}, {k}) {w} AS a{k}" for k in range(1, FUNDING_NEIGHBOURS + 1))
        cols = ["cur_t", *(f"a{k}" for k in range(1, FUNDING_NEIGHBOURS + 1))]
        after = [self._diff(x, y) for x, y in itertools.pairwise(cols)]
        cols = [f"b{k}" for k in range(FUNDING_NEIGHBOURS + 1, 0, -1)]
        before = [self._diff(x, y) for x, y in itertools.pairwise(cols)]
        eb = f"{least}({', '.join(f'COALESCE({d}, {_FAR})' for d in before)})"
        ea = f"{least}({', '.join(f'COALESCE({d}, {_FAR})' for d in after)})"
        expected = (
            f"CASE WHEN eb >= {_FAR} AND ea >= {_FAR} THEN {int(default_ms)} WHEN eb >= {_FAR} THEN ea "
            f"WHEN ea >= {_FAR} THEN eb ELSE {greatest}(eb, ea) END"
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

    def agg_pairs(self, symbol: str, lo: int, hi: int) -> list[tuple[int, int, int, int]]:
        """(previous id, id, previous time, time) where ids are not consecutive."""
        t, c, _ = self._names("agg_trades")
        q, ph = self.sink._q, self.sink.ph
        i = q("agg_trade_id")
        w = f"OVER (PARTITION BY symbol ORDER BY {i})"
        sql = (
            f"SELECT prev_id, cur_id, prev_t, cur_t FROM (SELECT {i} AS cur_id, {c} AS cur_t, LAG({i}) {w} AS prev_id, "
            f"LAG({c}) {w} AS prev_t FROM {t} WHERE symbol = {ph} AND {c} >= {ph} AND {c} < {ph}) w "
            "WHERE prev_id IS NOT NULL AND cur_id - prev_id > 1 ORDER BY cur_id"
        )
        rows = self._rows(sql, [symbol, self._t(lo), self._t(hi)])
        return [(int(a), int(b), self._ms(pt), self._ms(ct)) for a, b, pt, ct in rows]


class _MongoBackend:
    """The same questions as aggregation pipelines (``$setWindowFields`` + ``$shift``) on a MongoSink."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def _agg(self, table: str, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.sink._prepare(table)
        return self.sink._call(lambda db: list(db[table].aggregate(pipeline)))

    @staticmethod
    def _ms(value: Any) -> int:
        return dt_to_ms(value)

    def _match(self, table: str, symbol: str, lo: int, hi: int) -> tuple[dict[str, Any], str, str]:
        from binance_extractor.sinks.schema import spec_for

        spec = spec_for(table)
        tcol = spec.time_column or ""
        flt = {"$match": {"symbol": symbol, tcol: {"$gte": ms_to_dt(lo), "$lt": ms_to_dt(hi)}}}
        return flt, tcol, spec.order_column

    def stats(self, table: str, symbol: str, lo: int, hi: int) -> tuple[int, int | None, int | None]:
        match, tcol, order = self._match(table, symbol, lo, hi)
        group = {"$group": {"_id": None, "n": {"$sum": 1}, "lo": {"$min": f"${order}"}, "hi": {"$max": f"${order}"}}}
        docs = self._agg(table, [match, group])
        if not docs or not docs[0]["n"]:
            return 0, None, None
        d = docs[0]
        if order == tcol:
            return int(d["n"]), self._ms(d["lo"]), self._ms(d["hi"])
        return int(d["n"]), int(d["lo"]), int(d["hi"])

    @staticmethod
    def _window(order: str, fields: dict[str, tuple[str, int]]) -> dict[str, Any]:
        output = {name: {"$shift": {"output": f"${src}", "by": by}} for name, (src, by) in fields.items()}
        return {"$setWindowFields": {"partitionBy": "$symbol", "sortBy": {order: 1}, "output": output}}

    def kline_pairs(self, table: str, symbol: str, lo: int, hi: int, step_ms: int) -> list[tuple[int, int]]:
        match, c, _ = self._match(table, symbol, lo, hi)
        pipeline = [
            match,
            self._window(c, {"prev": (c, -1)}),
            {"$match": {"prev": {"$ne": None}}},
            {"$project": {"_id": 0, "prev": 1, "cur": f"${c}", "d": {"$subtract": [f"${c}", "$prev"]}}},
            {"$match": {"d": {"$gt": step_ms}}},
            {"$sort": {"cur": 1}},
        ]
        return [(self._ms(d["prev"]), self._ms(d["cur"])) for d in self._agg(table, pipeline)]

    def funding_pairs(self, symbol: str, lo: int, hi: int, default_ms: int, tol_ms: int) -> list[FundingPair]:
        match, c, _ = self._match("funding_rates", symbol, lo, hi)
        n = FUNDING_NEIGHBOURS
        shifts = {f"b{k}": (c, -k) for k in range(1, n + 2)} | {f"a{k}": (c, k) for k in range(1, n + 1)}

        def gap(x: str, y: str) -> dict[str, Any]:
            both = {
                "$and": [{"$ne": [{"$ifNull": [f"${x}", None]}, None]}, {"$ne": [{"$ifNull": [f"${y}", None]}, None]}]
            }
            return {"$cond": [both, {"$subtract": [f"${y}", f"${x}"]}, _FAR]}

        after = ["cur", *(f"a{k}" for k in range(1, n + 1))]
        before = [f"b{k}" for k in range(n + 1, 0, -1)]
        far = {"$gte": ["$eb", _FAR]}
        expected = {
            "$switch": {
                "branches": [
                    {"case": {"$and": [far, {"$gte": ["$ea", _FAR]}]}, "then": int(default_ms)},
                    {"case": far, "then": "$ea"},
                    {"case": {"$gte": ["$ea", _FAR]}, "then": "$eb"},
                ],
                "default": {"$max": ["$eb", "$ea"]},
            }
        }
        pipeline = [
            match,
            self._window(c, shifts),
            {"$match": {"b1": {"$ne": None}}},
            {"$set": {"cur": f"${c}"}},
            {
                "$set": {
                    "eb": {"$min": [gap(x, y) for x, y in itertools.pairwise(before)]},
                    "ea": {"$min": [gap(x, y) for x, y in itertools.pairwise(after)]},
                    "d": {"$subtract": ["$cur", "$b1"]},
                }
            },
            {"$set": {"expected": expected}},
            {"$match": {"$expr": {"$gt": ["$d", {"$add": ["$expected", int(tol_ms)]}]}}},
            {"$sort": {"cur": 1}},
        ]
        out: list[FundingPair] = []
        for d in self._agg("funding_rates", pipeline):
            prev, cur = self._ms(d["b1"]), self._ms(d["cur"])
            first, last = d.get(f"b{n + 1}"), d.get(f"a{n}")
            ctx = (prev if first is None else self._ms(first), cur if last is None else self._ms(last))
            out.append(FundingPair(prev, cur, int(d["expected"]), ctx))
        return out

    def agg_pairs(self, symbol: str, lo: int, hi: int) -> list[tuple[int, int, int, int]]:
        match, c, i = self._match("agg_trades", symbol, lo, hi)
        pipeline = [
            match,
            self._window(i, {"prev_id": (i, -1), "prev_t": (c, -1)}),
            {"$match": {"prev_id": {"$ne": None}}},
            {"$project": {"_id": 0, "prev_id": 1, "prev_t": 1, "cur_id": f"${i}", "cur_t": f"${c}"}},
            {"$match": {"$expr": {"$gt": [{"$subtract": ["$cur_id", "$prev_id"]}, 1]}}},
            {"$sort": {"cur_id": 1}},
        ]
        return [
            (int(d["prev_id"]), int(d["cur_id"]), self._ms(d["prev_t"]), self._ms(d["cur_t"]))
            for d in self._agg("agg_trades", pipeline)
        ]


def _backend(sink: Any) -> Any:
    if sink.name in ("sqlite", "mysql", "postgres"):
        return _SqlBackend(sink)
    if sink.name == "mongo":
        return _MongoBackend(sink)
    raise InputError(f"gap detection needs a database sink (sqlite, mysql, postgres or mongo), not {sink.name}")


def db_sinks(sinks: Sequence[Any]) -> list[Any]:
    """The sinks detection can query (JSON lines output is write-only)."""
    out = [s for s in sinks if s.name in DB_SINKS]
    if not out:
        raise InputError("gap detection needs a database sink: --sink sqlite, mysql, postgres or mongo")
    return out


# --------------------------------------------------------------------------------------------- detection


def detect_range(
    sink: Any,
    table: str,
    symbol: str,
    lo: int,
    hi: int,
    *,
    head: bool = True,
    tail: bool = True,
    settings: GapSettings | None = None,
    funding_ms: int | None = None,
) -> tuple[int, list[Hole]]:
    """Stored row count and every hole of ``symbol`` in ``[lo, hi)`` (no ledger, no size filter).

    ``funding_ms``: the contract's current funding interval (``/fapi/v1/fundingInfo``), which bounds the tail
    after the newest stored event (and pairs with no neighbours); unknown: the longest, 8 h.

    ``head``/``tail``: also report missing rows between ``lo`` and the first stored row, and between the last
    stored row and ``hi`` (klines: exact; funding: beyond the longest interval plus tolerance).
    """
    settings = settings or GapSettings()
    be = _backend(sink)
    kind = kind_of(table)
    if hi <= lo:
        return 0, []
    n, mn, mx = be.stats(table, symbol, lo, hi)
    holes: list[Hole] = []

    def add(start: int, end: int, missing: int, ctx: tuple[int, int] | None = None) -> None:
        if end > start and missing > 0:
            cs, ce = ctx or (start, end)
            holes.append(Hole(table, symbol, start, end, missing, cs, ce))

    if kind == "klines":
        tf = timeframes.parse(table)
        lo, hi = tf.ceil_ms(lo), hi
        if mn is None or mx is None:
            if head and tail:
                add(lo, hi, tf.count_between(lo, hi))
            return 0, holes
        if head and mn > lo:
            add(lo, mn, tf.count_between(lo, mn))
        for prev, cur in be.kline_pairs(table, symbol, lo, hi, tf.ms):
            start = tf.next_open_ms(prev)
            add(start, cur, tf.count_between(start, cur))
        after = tf.next_open_ms(mx)
        if tail and after < hi:
            add(after, hi, tf.count_between(after, hi))
    elif kind == "funding":
        longest = FUNDING_DEFAULT_MS + settings.funding_tolerance_ms
        if mn is None or mx is None:
            if head and tail and hi - lo > longest:
                add(lo, hi, (hi - lo) // FUNDING_DEFAULT_MS)
            return 0, holes
        if head and mn - lo > longest:
            add(lo, mn, max(1, (mn - lo) // FUNDING_DEFAULT_MS), (lo, mn + 1))
        current = funding_ms or FUNDING_DEFAULT_MS
        for pair in be.funding_pairs(symbol, lo, hi, current, settings.funding_tolerance_ms):
            step = max(HOUR_MS, pair.interval)
            missing = max(1, round((pair.cur - pair.prev) / step) - 1)
            add(pair.prev + 1, pair.cur, missing, (pair.ctx[0], pair.ctx[1] + 1))
        if tail and hi - mx > current + settings.funding_tolerance_ms:
            add(mx + 1, hi, max(1, (hi - mx - 1) // current), (mx, hi))  # events at mx + k * interval < hi
    else:
        if mn is None or mx is None:
            return 0, holes
        for prev_id, cur_id, prev_t, cur_t in be.agg_pairs(symbol, lo, hi):
            add(prev_t, cur_t + 1, cur_id - prev_id - 1)
    return n, holes


def _minus_known(holes: Sequence[Hole], known: Sequence[tuple[int, int]]) -> tuple[list[Hole], int]:
    """Holes outside the ledger's confirmed exchange-side ranges; also how many holes the ledger covered fully."""
    if not known:
        return list(holes), 0
    out: list[Hole] = []
    covered = 0
    for h in holes:
        parts = _subtract(h.start_ms, h.end_ms, known)
        if not parts:
            covered += 1
            continue
        if parts == [(h.start_ms, h.end_ms)]:
            out.append(h)
            continue
        tf = timeframes.parse(h.table) if kind_of(h.table) == "klines" else None
        for s, e in parts:
            missing = tf.count_between(s, e) if tf is not None else h.missing
            if missing > 0:
                ctx = (s, e) if tf is not None else (h.ctx_start_ms, h.ctx_end_ms)
                out.append(Hole(h.table, h.symbol, s, e, missing, *ctx))
    return out, covered


def _known(sink: Any, table: str, symbol: str) -> list[tuple[int, int]]:
    return [(dt_to_ms(s), dt_to_ms(e)) for s, e in sink.known_gaps(table, symbol)]


@dataclass
class Scan:
    """What detection found for one (table, symbol), merged over the database sinks."""

    table: str
    symbol: str
    start_ms: int
    end_ms: int
    stored: int
    holes: list[Hole] = field(default_factory=list)
    skipped: list[Hole] = field(default_factory=list)  # outside the min/max size filter: reported, not filled
    known: int = 0  # holes the ledger already lists as exchange-side

    @property
    def missing(self) -> int:
        return sum(h.missing for h in self.holes) + sum(h.missing for h in self.skipped)

    @property
    def completeness(self) -> float:
        total = self.stored + self.missing
        return 1.0 if total == 0 else self.stored / total

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "symbol": self.symbol,
            "start": _iso(self.start_ms),
            "end": _iso(self.end_ms),
            "stored": self.stored,
            "holes": len(self.holes),
            "skipped": len(self.skipped),
            "known_exchange_side": self.known,
            "missing": self.missing,
            "completeness": round(self.completeness, 6),
        }


def _bounds(
    sink: Any, table: str, symbol: str, start_ms: int | None, end_ms: int, settings: GapSettings
) -> tuple[int, int] | None:
    """Detection range of one symbol: [start or first stored row, end), bounded by ``lookback_days``."""
    lo = start_ms
    if lo is None:
        first = sink.first_time(table, symbol)
        if first is None:
            return None
        lo = dt_to_ms(first)
    if settings.lookback_days is not None:
        lo = max(lo, end_ms - int(settings.lookback_days * DAY_MS))
    if kind_of(table) == "agg_trades":
        last = sink.last_time(table, symbol)
        end_ms = min(end_ms, dt_to_ms(last) + 1) if last is not None else end_ms
    return (lo, end_ms) if lo < end_ms else None


def closed_end(table: str, end_ms: int | None, now: int) -> int:
    """Exclusive end of detection: klines up to the last candle closed by ``end`` (and now), the rest up to it."""
    end = now if end_ms is None else min(end_ms, now)
    if kind_of(table) == "klines":
        return timeframes.parse(table).floor_ms(end)
    return end


def scan(
    sinks: Sequence[Any],
    tables: Sequence[str],
    symbols: Sequence[str] | None = None,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    starts: Mapping[str, datetime | None] | None = None,
    settings: GapSettings | None = None,
    now: int | None = None,
    funding_hours: Mapping[str, int] | None = None,
) -> list[Scan]:
    """Detect holes per (table, symbol) in every database sink; the ledger's known holes are excluded.

    ``symbols`` default: those stored in each table. ``start`` (or ``starts[symbol]``, e.g. listing dates with
    ``full_history``) makes missing rows before the first stored one count too; otherwise detection starts at the
    first stored row. ``end`` defaults to now (klines: the last closed candle). ``funding_hours``: each contract's
    current funding interval (``funding_intervals``); a missing tail of a 1 h or 4 h contract is found with it.
    """
    settings = settings or GapSettings.load()
    now = now if now is not None else now_ms()
    stores = db_sinks(sinks)
    out: list[Scan] = []
    for table in tables:
        kind = kind_of(table)
        hi = closed_end(table, dt_to_ms(end) if end is not None else None, now)
        names = list(symbols) if symbols else sorted({s for sink in stores for s in sink.symbols(table)})
        for symbol in names:
            begin = (starts or {}).get(symbol) or start
            found: list[Hole] = []
            stored: list[int] = []
            known = 0
            span: tuple[int, int] | None = None
            for sink in stores:
                bounds = _bounds(sink, table, symbol, dt_to_ms(begin) if begin else None, hi, settings)
                if bounds is None:
                    stored.append(0)
                    continue
                lo, top = bounds
                span = (min(span[0], lo), max(span[1], top)) if span else (lo, top)
                n, holes = detect_range(
                    sink,
                    table,
                    symbol,
                    lo,
                    top,
                    head=True,
                    tail=kind != "agg_trades",
                    settings=settings,
                    funding_ms=_funding_ms(funding_hours, symbol) if kind == "funding" else None,
                )
                holes, covered = _minus_known(holes, _known(sink, table, symbol))
                stored.append(n)
                known = max(known, covered)
                found.extend(holes)
            if span is None:
                continue
            merged = _merge(found)
            keep = [h for h in merged if _size_ok(h, settings)]
            skipped = [h for h in merged if not _size_ok(h, settings)]
            out.append(Scan(table, symbol, span[0], span[1], min(stored), keep, skipped, known))
    return out


def _funding_ms(funding_hours: Mapping[str, int] | None, symbol: str) -> int | None:
    if funding_hours is None:
        return None
    return int(funding_hours.get(symbol, 8)) * HOUR_MS  # fundingInfo lists adjusted contracts; the rest are 8 h


def funding_intervals(client: Any) -> dict[str, int] | None:
    """Current funding interval (hours) per contract from ``/fapi/v1/fundingInfo``; None if it cannot be read
    (detection then assumes the longest, 8 h, for the tail)."""
    try:
        return dict(client.funding_intervals())
    except ExtractorError as exc:
        log.warning("fundingInfo unavailable, funding tails judged by 8 h: %s", exc)
        return None


def _size_ok(hole: Hole, settings: GapSettings) -> bool:
    return hole.missing >= settings.min_gap and (settings.max_gap is None or hole.missing <= settings.max_gap)


def holes_of(scans: Iterable[Scan]) -> list[Hole]:
    return [h for s in scans for h in s.holes]


def redetect(
    chunk: Chunk, sinks: Sequence[Any], settings: GapSettings | None = None, funding_ms: int | None = None
) -> list[Hole]:
    """Holes still open inside the chunk (ledger excluded), re-detected over its context in every DB sink."""
    found: list[Hole] = []
    for sink in db_sinks(sinks):
        _, holes = detect_range(
            sink,
            chunk.table,
            chunk.symbol,
            chunk.ctx_start_ms,
            chunk.ctx_end_ms,
            head=True,
            tail=kind_of(chunk.table) != "agg_trades",
            settings=settings,
            funding_ms=funding_ms,
        )
        holes, _ = _minus_known(holes, _known(sink, chunk.table, chunk.symbol))
        for h in holes:
            s, e = max(h.start_ms, chunk.start_ms), min(h.end_ms, chunk.end_ms)
            if s < e:
                found.append(replace(h, start_ms=s, end_ms=e) if (s, e) != (h.start_ms, h.end_ms) else h)
    return _merge(found)


# --------------------------------------------------------------------------------------------- repair


@dataclass
class ChunkResult:
    """One chunk's repair: holes before, closed, confirmed exchange-side, still open; requests sent."""

    chunk: Chunk
    found: int = 0
    filled: int = 0
    confirmed: int = 0
    remaining: list[Hole] = field(default_factory=list)
    rows_extracted: int = 0
    rows_written: int = 0
    requests: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk": self.chunk.spec(),
            "table": self.chunk.table,
            "symbol": self.chunk.symbol,
            "found": self.found,
            "filled": self.filled,
            "confirmed": self.confirmed,
            "remaining": [h.to_dict() for h in self.remaining],
            "rows_extracted": self.rows_extracted,
            "rows_written": self.rows_written,
            "requests": self.requests,
            "error": self.error,
        }


def _job(hole: Hole, source: str, requested_by: str) -> Any:
    from binance_extractor.pipeline import Job

    kind = kind_of(hole.table)
    interval = timeframes.parse(hole.table).interval if kind == "klines" else None
    return Job(
        kind=kind,
        symbol=hole.symbol,
        interval=interval,
        start=ms_to_dt(hole.start_ms),
        end=ms_to_dt(hole.end_ms),
        source=source if kind == "klines" else "rest",
        requested_by=requested_by,
    )


def _fetch_range(hole: Hole, chunk: Chunk, settings: GapSettings | None) -> Hole:
    """What to refetch for ``hole`` (already clipped to ``chunk``).

    Klines and agg trades: the hole itself. Funding: a hole is a too-long distance between two stored rows, and a
    chunk boundary (weekly, Monday 00:00 UTC) can cut it so that this chunk's piece holds no funding time at all
    while the missing row sits just past the boundary in the next chunk. Refetching only the piece returns
    nothing, so the piece would be "confirmed" exchange-side although the next chunk fills it. Refetching up to
    one longest interval (plus tolerance) beyond the piece, inside the hole's context, brings in the neighbouring
    rows, so re-detection judges the piece exactly as a whole-hole refetch would (writes are idempotent upserts).
    """
    if kind_of(hole.table) != "funding":
        return hole
    margin = FUNDING_DEFAULT_MS + (settings or GapSettings()).funding_tolerance_ms
    start = max(chunk.ctx_start_ms, hole.start_ms - margin)
    end = min(chunk.ctx_end_ms, hole.end_ms + margin)
    return replace(hole, start_ms=start, end_ms=end)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return (text if isinstance(exc, ExtractorError) else f"{type(exc).__name__}: {text}")[:500]


def fill_chunk(
    chunk: Chunk,
    sinks: Sequence[Any],
    client: Any,
    *,
    source: str = "auto",
    requested_by: str = "gap-filler",
    settings: GapSettings | None = None,
) -> ChunkResult:
    """Re-detect, refetch each hole (``pipeline.run_job``: the client's retries), re-detect, confirm the rest.

    A hole still open after a fill that succeeded had no rows at the exchange (every row returned was written):
    it is recorded in every sink's ledger as exchange-side, with when, by whom and how many requests it took.
    If the fill failed, nothing is confirmed: the holes stay open for the closure check to report.
    """
    from binance_extractor.pipeline import run_job

    result = ChunkResult(chunk)
    funding_ms = None
    if kind_of(chunk.table) == "funding" and hasattr(client, "funding_intervals"):
        funding_ms = _funding_ms(funding_intervals(client), chunk.symbol)  # the tail is judged by it
    before = redetect(chunk, sinks, settings, funding_ms)
    result.found = len(before)
    if not before:
        return result
    sent = getattr(client, "requests_sent", 0)
    for hole in before:
        try:
            res = run_job(_job(_fetch_range(hole, chunk, settings), source, requested_by), sinks, client)
            result.rows_extracted += res.rows_extracted
            result.rows_written += res.rows_written
        except Exception as exc:
            result.error = _one_line(exc)
            log.warning("gap fill failed for %s: %s", hole.describe(), result.error)
            break
    result.requests = getattr(client, "requests_sent", 0) - sent
    after = redetect(chunk, sinks, settings, funding_ms)
    result.filled = sum(1 for h in before if not any(a.start_ms < h.end_ms and h.start_ms < a.end_ms for a in after))
    if result.error is not None:
        result.remaining = after
        return result
    method = f"refetch:{source}" if kind_of(chunk.table) == "klines" else "refetch:rest"
    confirmed_at = clock.now()
    for hole in after:
        for sink in db_sinks(sinks):
            sink.record_gap(
                hole.table,
                hole.symbol,
                ms_to_dt(hole.start_ms),
                ms_to_dt(hole.end_ms),
                checked_by=requested_by,
                method=method,
                requests=result.requests,
                confirmed_at=confirmed_at,
            )
        log.info("confirmed exchange-side hole %s (%d requests)", hole.describe(), result.requests)
    result.confirmed = len(after)
    return result


def fill_chunks(
    chunks: Sequence[Chunk],
    sinks: Sequence[Any],
    client: Any,
    *,
    source: str = "auto",
    requested_by: str = "gap-filler",
    settings: GapSettings | None = None,
) -> list[ChunkResult]:
    results = []
    for chunk in chunks:
        res = fill_chunk(chunk, sinks, client, source=source, requested_by=requested_by, settings=settings)
        if res.found:
            log.info(
                "%s: %d hole(s), %d filled, %d confirmed exchange-side, %d open, %d rows, %d requests",
                chunk.describe(),
                res.found,
                res.filled,
                res.confirmed,
                len(res.remaining),
                res.rows_written,
                res.requests,
            )
        results.append(res)
    return results


# --------------------------------------------------------------------------------------------- closure and report


def verify(
    chunks: Sequence[Chunk],
    sinks: Sequence[Any],
    results: Iterable[Mapping[str, Any]] = (),
    settings: GapSettings | None = None,
) -> list[dict[str, Any]]:
    """Re-detect every chunk; the holes still open (not in the ledger), each with why, if the fill said."""
    errors = {r["chunk"]: r.get("error") for r in results if r}
    open_holes: list[dict[str, Any]] = []
    for chunk in chunks:
        spec = chunk.spec()
        if spec not in errors:
            reason = "no fill result (its task failed or did not run)"
        elif errors[spec]:
            reason = f"fill failed: {errors[spec]}"
        else:
            reason = "still open after a successful fill"
        for hole in redetect(chunk, sinks, settings):
            open_holes.append({**hole.to_dict(), "reason": reason})
    return open_holes


def closure_message(open_holes: Sequence[Mapping[str, Any]], limit: int = 10) -> str:
    parts = [f"{h['table']} {h['symbol']} [{h['start']}, {h['end']}): {h.get('reason')}" for h in open_holes[:limit]]
    more = f"; and {len(open_holes) - limit} more" if len(open_holes) > limit else ""
    return (
        f"gap closure failed: {len(open_holes)} hole(s) the exchange may have data for are still open: "
        + "; ".join(parts)
        + more
    )


def raise_if_open(open_holes: Sequence[Mapping[str, Any]]) -> None:
    if open_holes:
        raise GapClosureError(closure_message(open_holes))


def build_report(
    before: Sequence[Scan | Mapping[str, Any]],
    results: Iterable[Mapping[str, Any]],
    after: Sequence[Scan],
    open_holes: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Per table and symbol: holes found, filled, confirmed exchange-side, remaining, and completeness."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(table: str, symbol: str) -> dict[str, Any]:
        key = (table, symbol)
        if key not in rows:
            rows[key] = {
                "table": table,
                "symbol": symbol,
                "found": 0,
                "filled": 0,
                "confirmed": 0,
                "remaining": 0,
                "skipped": 0,
                "known_exchange_side": 0,
                "missing_before": 0,
                "missing_after": 0,
                "rows_written": 0,
                "requests": 0,
                "completeness": None,
            }
        return rows[key]

    for s in before:
        d = s.to_dict() if isinstance(s, Scan) else s  # detect's XCom carries Scan.to_dict()
        e = entry(str(d["table"]), str(d["symbol"]))
        e["found"] += int(d["holes"])
        e["skipped"] += int(d["skipped"])
        e["missing_before"] += int(d["missing"])
    for r in results:
        if not r:
            continue
        e = entry(str(r["table"]), str(r["symbol"]))
        for k in ("filled", "confirmed", "rows_written", "requests"):
            e[k] += int(r.get(k) or 0)
        if not before:  # chunk mode: what the chunks re-detected is what was found
            e["found"] += int(r.get("found") or 0)
            e["remaining"] += len(r.get("remaining") or [])
    for s in after:
        e = entry(s.table, s.symbol)
        e["remaining"] += len(s.holes)
        e["known_exchange_side"] = s.known
        e["missing_after"] += s.missing
        e["completeness"] = round(s.completeness, 6)
    per = sorted(rows.values(), key=lambda e: (e["table"], e["symbol"]))
    totals = {k: sum(e[k] for e in per) for k in ("found", "filled", "confirmed", "remaining", "rows_written")}
    totals["requests"] = sum(e["requests"] for e in per)
    worst = min((e["completeness"] for e in per if e["completeness"] is not None), default=1.0)
    return {"totals": {**totals, "min_completeness": worst}, "symbols": per, "open": list(open_holes)}


def report_lines(report: Mapping[str, Any]) -> list[str]:
    """The report as a small table for the task log."""
    t = report["totals"]
    out = [
        f"gap filler: {t['found']} hole(s) found, {t['filled']} filled, {t['confirmed']} confirmed exchange-side, "
        f"{t['remaining']} remaining; {t['rows_written']} rows written, {t['requests']} requests; "
        f"lowest completeness {t['min_completeness']:.4%}"
    ]
    for e in report["symbols"]:
        comp = "n/a" if e["completeness"] is None else f"{e['completeness']:.4%}"
        out.append(
            f"  {e['table']:<14} {e['symbol']:<14} found={e['found']:<4} filled={e['filled']:<4} "
            f"confirmed={e['confirmed']:<4} remaining={e['remaining']:<4} skipped={e['skipped']:<4} "
            f"missing={e['missing_after']:<6} completeness={comp}"
        )
    out.extend(f"  OPEN {h['table']} {h['symbol']} [{h['start']}, {h['end']})" for h in report.get("open", []))
    return out


def emit_metrics(report: Mapping[str, Any]) -> None:
    """``binance.gaps`` (state, table) and ``binance.completeness`` (table, symbol)."""
    counter = telemetry.instruments.counter("binance.gaps", description="holes by state")
    gauge = telemetry.instruments.gauge("binance.completeness", description="stored / expected rows")
    for e in report["symbols"]:
        for state in STATES:
            if e[state]:
                counter.add(e[state], {"state": state, "table": e["table"]})
        if e["completeness"] is not None:
            gauge.set(e["completeness"], {"table": e["table"], "symbol": e["symbol"]})


def plan_groups(holes: Iterable[Hole], settings: GapSettings) -> list[list[Chunk]]:
    """Holes -> weekly chunks -> at most ``max_mapped_tasks`` groups (one mapped task instance each)."""
    return group_chunks(chunk_holes(holes, settings.chunk_ms), settings.max_mapped_tasks)


def fill_arguments(
    group: Sequence[Chunk],
    *,
    source: str = "auto",
    sinks: Sequence[str] | None = None,
    conn_ids: Mapping[str, str] | None = None,
    requested_by: str | None = None,
    xcom: bool = False,
) -> list[str]:
    """argv of ``python -m binance_extractor fill-gaps`` for one group: pods and local tasks run the same."""
    from binance_extractor.orchestration import output_options

    argv = ["fill-gaps"]
    for chunk in group:
        argv += ["--chunk", chunk.spec()]
    argv += ["--source", source]
    return argv + output_options(sinks, conn_ids, requested_by, xcom)


def chunks_of_argv(argv: Sequence[str]) -> list[Chunk]:
    args = list(argv)
    return [Chunk.parse(args[i + 1]) for i, a in enumerate(args[:-1]) if a == "--chunk"]


def argv_label(argv: Sequence[str]) -> str:
    """UI label of a fill task: its first chunk, and how many more."""
    chunks = chunks_of_argv(argv)
    if not chunks:
        return "?"
    first = chunks[0]
    label = f"{first.table} {first.symbol} {_iso(first.start_ms)[:16]}"
    return label + (f" +{len(chunks) - 1}" if len(chunks) > 1 else "")


def onboard_starts(client: Any, symbols: Iterable[str]) -> dict[str, datetime | None]:
    """Listing dates (``full_history``): missing rows from there to the first stored one count as holes."""
    return {s: client.onboard_time(s) for s in symbols}


__all__ = [
    "Chunk",
    "ChunkResult",
    "GapClosureError",
    "GapSettings",
    "Hole",
    "Scan",
    "build_report",
    "chunk_holes",
    "closed_end",
    "detect_range",
    "emit_metrics",
    "fill_arguments",
    "fill_chunk",
    "fill_chunks",
    "group_chunks",
    "plan_groups",
    "redetect",
    "report_lines",
    "scan",
    "verify",
]
