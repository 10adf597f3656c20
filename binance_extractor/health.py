"""Data health per table and symbol: rows, first/last key, freshness, completeness, holes, last runs, chart data.

The data-health page (plugins/data_health.py) and anything else that must know whether the data is complete
read it from here, through the same sinks that write the data. Every query is bounded by the key index: the
first/last key (``ORDER BY key LIMIT 1``), counts on the key's symbol prefix or a bounded key range, hole
detection over the chosen window only, the ledger and the run audit by their indexes. Nothing scans a table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from binance_extractor import clock, config, gaps
from binance_extractor.catalog import Shape
from binance_extractor.errors import InputError
from binance_extractor.kinds import Dataset
from binance_extractor.masking import mask
from binance_extractor.sinks.base import GAP_PENDING, GapRecord, RunRecord, Store
from binance_extractor.timeutil import dt_to_ms, iso, ms_to_dt

DEFAULT_WINDOW_DAYS = 7
MAX_WINDOW_DAYS = 366
DEFAULT_RUNS = 3
EXACT_COUNT_LIMIT = 250_000  # rows per symbol counted exactly; above it klines show the key span (≈)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else iso(value)


@dataclass
class SymbolHealth:
    """What one (table, symbol) looks like right now."""

    table: str
    symbol: str
    rows: int | None  # None: not counted (trades above the exact-count bound)
    first: datetime | None
    last: datetime | None
    lag_s: float | None  # seconds behind the schedule (klines: the newest closed candle), None = empty
    window_start: datetime
    window_end: datetime
    expected: int | None  # rows the window should hold (klines: exact; others: stored + detected missing)
    stored: int  # rows the window holds
    missing: int  # rows missing in open holes (not confirmed exchange-side)
    open_holes: list[dict[str, Any]] = field(default_factory=list)  # each with status open / not_fillable_yet
    confirmed_holes: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    rows_exact: bool = True  # False: ``rows`` is the key span (candles between first and last), not a count
    stale: bool = False  # behind schedule by more than ``freshness_grace_minutes``

    @property
    def completeness(self) -> float | None:
        if not self.expected:
            return None
        return min(1.0, self.stored / self.expected)

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "symbol": self.symbol,
            "rows": self.rows,
            "rows_exact": self.rows_exact,
            "first": _iso(self.first),
            "last": _iso(self.last),
            "lag_s": self.lag_s,
            "stale": self.stale,
            "window_start": _iso(self.window_start),
            "window_end": _iso(self.window_end),
            "expected": self.expected,
            "stored": self.stored,
            "missing": self.missing,
            "completeness": None if self.completeness is None else round(self.completeness, 6),
            "open_holes": self.open_holes,
            "confirmed_holes": self.confirmed_holes,
            "runs": self.runs,
        }


def lag_seconds(dataset: Dataset, last: datetime | None, now_ms: int) -> float | None:
    """How far ``dataset`` is behind its schedule at ``now_ms`` (0 = up to date); None when nothing is stored.

    Klines: behind the newest closed candle (as ``binance.freshness.lag``). Funding: behind the latest
    settlement of an 8-hour contract. Trades: behind the last full hour (the trades DAG runs hourly).
    """
    if last is None:
        return None
    last_ms = dt_to_ms(last)
    tf = dataset.grid  # candles, and open interest's 5-minute marks
    if tf is not None:
        return max(0, tf.floor_ms(now_ms) - tf.next_open_ms(last_ms)) / 1000
    step = int(dataset.entry.due_every(None).total_seconds() * 1000)  # funding: its longest interval; trades: 1 h
    return max(0, now_ms - step - last_ms) / 1000


def is_stale(dataset: Dataset, last: datetime | None, now_ms: int, grace_ms: int) -> bool:
    """Late beyond the grace: klines when the first candle missing after ``last`` closed more than ``grace_ms``
    ago (a run has that long to store it); other tables when their lag exceeds the grace."""
    if last is None:
        return False
    tf = dataset.grid
    if tf is not None:
        first_missing_open = tf.next_open_ms(dt_to_ms(last))
        return now_ms > tf.next_open_ms(first_missing_open) - 1 + grace_ms
    lag = lag_seconds(dataset, last, now_ms) or 0
    return lag * 1000 > grace_ms


def window_bounds(
    dataset: Dataset, days: float, now_ms: int, start: datetime | None = None, end: datetime | None = None
) -> tuple[int, int]:
    """The completeness window: ``[start, end)`` if given, else the last ``days``; never past the last closed
    candle (klines) or now."""
    if not 0 < days <= MAX_WINDOW_DAYS:
        raise InputError(f"window must be between 0 and {MAX_WINDOW_DAYS} days, got {days}")
    end_ms = dt_to_ms(end) if end is not None else None
    if not dataset.entry.gap_filled:  # no gap detection (trades): the window just ends now (or at ``end``)
        hi = now_ms if end_ms is None else min(end_ms, now_ms)
    else:
        hi = gaps.closed_end(dataset, end_ms, now_ms)
    lo = dt_to_ms(start) if start is not None else hi - int(days * 86_400_000)
    if start is not None and end is not None and end <= start:
        raise InputError("the window's end must be after its start")
    grid = dataset.grid
    if grid is not None:
        lo = grid.ceil_ms(lo)
    return lo, max(lo, hi)


def recent_runs(sink: Store, dataset: Dataset, symbol: str, limit: int = DEFAULT_RUNS) -> list[RunRecord]:
    """The newest audit rows of (dataset, symbol), through the (table_name, symbol, started_at) index."""
    return sink.recent_runs(dataset, symbol, max(1, int(limit)))


def stored_symbols(sink: Store, dataset: Dataset) -> list[str]:
    """Symbols stored in ``dataset``, by index seeks where the store can (see ``Store.stored_symbols``)."""
    return sink.stored_symbols(dataset)


def _run_dict(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "outcome": run.outcome,
        "rows_written": run.rows_written,
        "requested_by": run.requested_by,
        "error": mask(run.error) if run.error else None,  # rows audited before masking was complete, too
    }


def _row_count(
    sink: Store, dataset: Dataset, symbol: str, first: datetime | None, last: datetime | None, limit: int | None
) -> tuple[int | None, bool]:
    """Exact ``COUNT(*)`` on the key's symbol prefix while that range is small (or ``limit`` is None).

    Counting reads every key of the symbol, so above ``limit`` rows a klines table reports its key span (candles
    between the first and last key: the count if there are no holes) and trades report nothing; funding rates
    (three rows a day at most) are always counted.
    """
    if first is None or last is None:
        return 0, True
    if limit is None or dataset.shape is Shape.EVENTS:
        return sink.count(dataset, symbol), True
    if dataset.timeframe is not None:
        span = dataset.timeframe.count_between(dt_to_ms(first), dt_to_ms(last) + 1)
        return (sink.count(dataset, symbol), True) if span <= limit else (span, False)
    probe = sink.read(dataset, symbol, first, first + timedelta(minutes=10))  # trades: estimate from a sample
    per_ms = len(probe) / 600_000
    if per_ms * (dt_to_ms(last) - dt_to_ms(first)) <= limit:
        return sink.count(dataset, symbol), True
    return None, False


def symbol_health(
    sink: Store,
    table: str | Dataset,
    symbol: str,
    *,
    window_days: float = DEFAULT_WINDOW_DAYS,
    start: datetime | None = None,
    end: datetime | None = None,
    now_ms: int | None = None,
    runs: int = DEFAULT_RUNS,
    max_holes: int = 20,
    exact_limit: int | None = EXACT_COUNT_LIMIT,
) -> SymbolHealth:
    now = clock.now_ms() if now_ms is None else now_ms
    dataset = Dataset.parse(table)
    table = dataset.table
    first, last = sink.first_time(dataset, symbol), sink.last_time(dataset, symbol)
    rows, rows_exact = _row_count(sink, dataset, symbol, first, last, exact_limit)
    lo, hi = window_bounds(dataset, window_days, now, start, end)
    stored, holes = 0, list[gaps.Hole]()
    if last is not None and hi > lo:
        if not dataset.entry.gap_filled:
            stored = sink.count(dataset, symbol, ms_to_dt(lo), ms_to_dt(hi))
        else:
            # a symbol listed inside the window starts at its first row, not at the window's start
            lo = max(lo, dt_to_ms(first)) if first is not None else lo
            tail = dataset.shape is not Shape.IDS
            stored, holes = gaps.detect_range(sink, dataset, symbol, lo, hi, tail=tail)
    ledger = sink.gap_records(dataset, symbol)
    known = [(g.gap_start, g.gap_end) for g in ledger if g.skipped]
    pending = [g for g in ledger if g.status == GAP_PENDING]
    open_holes, _ = gaps.minus_known(holes, [(dt_to_ms(s), dt_to_ms(e)) for s, e in known])
    missing = sum(h.missing for h in open_holes)
    grid = dataset.grid
    if grid is not None:
        expected: int | None = grid.count_between(lo, hi) if last is not None else 0
    elif not dataset.entry.gap_filled:
        expected = None  # trade ids are not contiguous per symbol: nothing to expect
    else:
        expected = stored + missing
    return SymbolHealth(
        table=table,
        symbol=symbol,
        rows=rows,
        first=first,
        last=last,
        lag_s=lag_seconds(dataset, last, now),
        window_start=ms_to_dt(lo),
        window_end=ms_to_dt(hi),
        expected=expected,
        stored=stored,
        missing=missing,
        open_holes=[_hole_dict(h, pending) for h in open_holes[:max_holes]],
        confirmed_holes=[{"start": iso(s), "end": iso(e)} for s, e in known[-max_holes:]],
        runs=[_run_dict(r) for r in recent_runs(sink, dataset, symbol, runs)],
        rows_exact=rows_exact,
        stale=is_stale(dataset, last, now, config.settings().freshness_grace_minutes * 60_000),
    )


def _hole_dict(hole: gaps.Hole, pending: list[GapRecord]) -> dict[str, Any]:
    """An open hole as the page shows it: ``open`` (the gap filler will fill it) or ``not_fillable_yet`` (the gap
    filler tried, the evidence rule could not confirm it yet: ``reason`` says why)."""
    why = gaps.pending_of(hole, pending)
    if why is None:
        return {**hole.to_dict(), "status": "open"}
    return {**hole.to_dict(), "status": gaps.NOT_FILLABLE_YET, "reason": why.reason}


def table_health(
    sink: Store,
    table: str | Dataset,
    symbols: list[str] | None = None,
    *,
    window_days: float = DEFAULT_WINDOW_DAYS,
    start: datetime | None = None,
    end: datetime | None = None,
    now_ms: int | None = None,
    runs: int = DEFAULT_RUNS,
    exact_limit: int | None = EXACT_COUNT_LIMIT,
) -> list[SymbolHealth]:
    """Health of every symbol stored in ``table`` (or of ``symbols``)."""
    dataset = Dataset.parse(table)
    now = clock.now_ms() if now_ms is None else now_ms
    names = symbols or stored_symbols(sink, dataset)
    return [
        symbol_health(
            sink,
            dataset,
            s,
            window_days=window_days,
            start=start,
            end=end,
            now_ms=now,
            runs=runs,
            exact_limit=exact_limit,
        )
        for s in names
    ]


def chart_points(
    sink: Store, table: str | Dataset, symbol: str, points: int = 200, end: datetime | None = None
) -> list[dict[str, Any]]:
    """Up to ``points`` candles of a klines table ending at ``end`` (default: the newest stored): open time, close
    and volume as exact decimal text. One bounded key-range read."""
    dataset = Dataset.parse(table)
    table, tf = dataset.table, dataset.timeframe
    if tf is None:
        raise InputError(f"charts need a klines table, not {table}")
    points = max(2, min(int(points), 2000))
    last = sink.last_time(dataset, symbol)
    if last is None:
        return []
    stop = min(dt_to_ms(last) + 1, dt_to_ms(end)) if end is not None else dt_to_ms(last) + 1
    start = ms_to_dt(stop - points * tf.ms)
    rows = sink.read(dataset, symbol, start, ms_to_dt(stop))
    return [{"t": iso(r["open_time"]), "close": _text(r["close"]), "volume": _text(r["volume"])} for r in rows]


def _text(value: Decimal) -> str:
    """Exact decimal text without the store's padding zeros (MySQL DECIMAL(38,18) returns 18 decimals)."""
    return format(value.normalize(), "f")
