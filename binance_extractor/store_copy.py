"""Copy every table of one store into another (market data, the gap ledger, the run audit), exactly and resumably.

Why this shape: a user who outgrows the embedded SQLite store moves to MySQL or PostgreSQL without re-downloading
anything. Market data goes per (table, symbol) in bounded key-time windows (``reader.window_for``), each window one
upsert transaction through the target's bulk path (klines: the source's columns, ``Store.read_columns``, straight
into ``write_block``, i.e. LOAD DATA / COPY). A window whose row count the target already matches is skipped,
so a copy that was interrupted continues where it stopped, and a second copy writes nothing; ``verify`` compares
those windows row by row instead and rewrites any that differ. The ledger and the audit go by key pages and only
rows the target lacks or holds differently are written. A copy never deletes: rows only the target has stay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from binance_extractor import reader, store_rows
from binance_extractor.catalog import AUDIT_TABLE, LEDGER_TABLE
from binance_extractor.errors import InputError
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import GapRecord, RunRecord, Store

log = logging.getLogger(__name__)

LEDGER = LEDGER_TABLE
AUDIT = AUDIT_TABLE
BOOKKEEPING = (LEDGER, AUDIT)
PAGE_ROWS = 5_000
_MS = timedelta(milliseconds=1)


@dataclass
class CopyResult:
    """One table copied: source rows seen, rows written, rows left alone because the target already had them."""

    table: str
    symbols: int = 0
    rows: int = 0
    written: int = 0
    skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "symbols": self.symbols,
            "rows": self.rows,
            "written": self.written,
            "skipped": self.skipped,
        }


def resolve_tables(source: Store, tables: Sequence[str] | None) -> list[str]:
    """The tables asked for (``klines_m5``/``m5``/``5m``, ``funding_rates`` ..., ``gap_ledger``,
    ``extraction_runs``), else every data table the source has, then the ledger and the audit."""
    if not tables:
        return [*source.data_tables(), *BOOKKEEPING]
    out: list[str] = []
    for name in tables:
        table = name.strip() if name.strip() in BOOKKEEPING else Dataset.parse(name).table
        if table not in out:
            out.append(table)
    return out


def copy_stores(
    source: Store,
    target: Store,
    tables: Sequence[str] | None = None,
    symbols: Sequence[str] | None = None,
    *,
    batch_rows: int = reader.DEFAULT_BATCH_ROWS,
    verify: bool = False,
) -> list[CopyResult]:
    """Copy ``tables`` (default: all) of ``symbols`` (default: all) from ``source`` into ``target``."""
    if batch_rows < 1:
        raise InputError("--batch-rows must be at least 1")
    wanted = None if not symbols else {s.strip().upper() for s in symbols if s.strip()}
    results = []
    for table in resolve_tables(source, tables):
        if table == LEDGER:
            result = _copy_ledger(source, target, wanted)
        elif table == AUDIT:
            result = _copy_audit(source, target, wanted)
        else:
            result = _copy_data(source, target, table, wanted, batch_rows, verify)
        log.info("copy: %s", result.to_dict())
        results.append(result)
    return results


# ---- market data ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Window:
    symbol: str
    start: Any
    end: Any
    rows: int


def _windows(source: Store, dataset: Dataset, symbols: list[str], batch_rows: int) -> Iterator[_Window]:
    step = reader.window_for(dataset, batch_rows)
    for symbol in symbols:
        lo, last = source.first_time(dataset, symbol), source.last_time(dataset, symbol)
        if lo is None or last is None:
            continue
        hi = last + _MS
        t = lo
        while t < hi:
            stop = min(t + step, hi)
            n = source.count(dataset, symbol, t, stop)
            if n:
                yield _Window(symbol, t, stop, n)
            t = stop


def _copy_data(
    source: Store, target: Store, table: str, wanted: set[str] | None, batch_rows: int, verify: bool
) -> CopyResult:
    """Count every window on both sides first (index range counts), then copy the windows the target lacks,
    reading window N+1 from the source while window N loads into the target (the load waits on the database,
    not on Python)."""
    dataset = Dataset.of_table(table)
    symbols = [s for s in source.stored_symbols(dataset) if wanted is None or s in wanted]
    result = CopyResult(table, symbols=len(symbols))
    todo: list[_Window] = []
    for w in _windows(source, dataset, symbols, batch_rows):
        result.rows += w.rows
        if target.count(dataset, w.symbol, w.start, w.end) == w.rows and (
            not verify
            or target.read(dataset, w.symbol, w.start, w.end) == source.read(dataset, w.symbol, w.start, w.end)
        ):
            result.skipped += w.rows
        else:
            todo.append(w)
    pending: Future[int] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy-writer") as writer:
        try:
            for w in todo:
                prepared = store_rows.read_prepared(source, dataset, w.symbol, w.start, w.end)
                if pending is not None:
                    result.written += pending.result()
                pending = writer.submit(store_rows.write, target, dataset, prepared)
            if pending is not None:
                result.written += pending.result()
                pending = None
        finally:
            if pending is not None:
                pending.cancel()
    return result


# ---- ledger and audit -----------------------------------------------------------------------------------------
def _copy_pages(
    table: str,
    page: Callable[[Store, Any, int], list[Any]],
    key: Callable[[Any], Any],
    keep: Callable[[Any], bool],
    write: Callable[[list[Any]], int],
    source: Store,
    target: Store,
) -> CopyResult:
    """Walk the source by key pages; write the rows the target's page at the same cursor lacks or differs on."""
    result = CopyResult(table)
    after = None
    while True:
        rows = page(source, after, PAGE_ROWS)
        if not rows:
            return result
        theirs = {key(r): r for r in page(target, after, 2 * PAGE_ROWS)}
        after = key(rows[-1])
        mine = [r for r in rows if keep(r)]
        changed = [r for r in mine if theirs.get(key(r)) != r]
        result.rows += len(mine)
        result.skipped += len(mine) - len(changed)
        if changed:
            result.written += write(changed)


def _copy_ledger(source: Store, target: Store, wanted: set[str] | None) -> CopyResult:
    def keep(g: GapRecord) -> bool:
        return wanted is None or g.symbol in wanted

    def key(g: GapRecord) -> tuple[Any, ...]:
        return g.key

    return _copy_pages(LEDGER, lambda s, a, n: s.gaps_page(a, n), key, keep, target.record_gaps, source, target)


def _copy_audit(source: Store, target: Store, wanted: set[str] | None) -> CopyResult:
    def keep(r: RunRecord) -> bool:
        return wanted is None or r.symbol in wanted

    def key(r: RunRecord) -> str:
        return r.run_id

    return _copy_pages(AUDIT, lambda s, a, n: s.runs_page(a, n), key, keep, target.record_runs, source, target)
