"""Bulk kline history from Binance's public data archive (data.binance.vision), REST for the rest.

Why: REST is capped by the IP weight budget (~10k candles/s at best); the archive is not. For the part of a
range that lies before today, whole past months come from monthly zips and the days around them from daily
zips, each verified against its ``.CHECKSUM`` (sha256) before a byte of it is parsed. Whatever the archive
lacks (today, yesterday before publication, a missing file, rows missing inside a file, a file that stays
corrupt) comes from REST in ``auto`` mode, so callers get exactly what ``extract.iter_klines`` would give them:
ordered, non-overlapping batches of validated, closed candles with open_time in ``[start_ms, end_ms)``.

Downloads run in a small thread pool (no weight: archive requests never touch the weight limiter) with at
most ``workers + 1`` files downloaded or buffered at any time, consumed in order.
"""

from __future__ import annotations

import contextvars
import logging
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from binance_extractor import config, timeutil
from binance_extractor.archive_columns import KlineBlock
from binance_extractor.archive_fetch import ATTEMPTS, ArchiveFetcher, ArchiveStats, FilePart, pooled_session
from binance_extractor.archive_files import (
    MICROS_THRESHOLD,
    ArchiveError,
    missing_ranges,
    parse_csv,
    parse_rows,
    parse_zip,
    read_zip,
    read_zip_bytes,
    to_klines,
)
from binance_extractor.archive_periods import DAY_MS, PREFIX, Period, archivable, plan_periods
from binance_extractor.catalog import PRICE_KINDS
from binance_extractor.derivative_models import PRICE_MODELS
from binance_extractor.errors import InputError
from binance_extractor.exchange_clock import closed_before
from binance_extractor.models import Kline
from binance_extractor.prices import Price
from binance_extractor.timeframes import Timeframe

log = logging.getLogger(__name__)

SOURCES = ("auto", "rest", "archive")
BATCH_SIZE = 5000  # rows per yielded batch: the sinks' preferred write size
# In ``auto`` mode, fewer archivable candles than this go to REST: a couple of REST pages (limit 499, weight 2)
# cost less than downloading files (e.g. a 5-minute incremental run crossing midnight, or a year of d1).
AUTO_MIN_CANDLES = 1000
# Download threads of a pipeline job: files are small and the path is latency-bound (two requests a file), so more
# in flight than cores pays; at most BULK_WORKERS + 1 files are held at once.
BULK_WORKERS = 8


def iter_klines(
    client: Any,
    symbol: str,
    tf: Timeframe,
    start_ms: int,
    end_ms: int,
    *,
    source: str = "auto",
    now_ms: int | None = None,
    base_url: str | None = None,
    workers: int = 4,
    stats: ArchiveStats | None = None,
    min_candles: int = AUTO_MIN_CANDLES,
    columnar: bool = False,
    price: Price = Price.TRADE,
) -> Iterator[list[Any] | KlineBlock]:
    """Ordered, non-overlapping batches of validated closed candles in ``[start_ms, end_ms)``.

    ``price``: trade klines, or the mark/index/premium-index series (``PriceKline`` models, or blocks of their
    kind, from their own archive folders; the index one per pair).

    ``columnar``: each complete archive file comes as one ``KlineBlock`` (parsed and validated by pyarrow, for
    the sinks' bulk loaders) instead of model batches; REST rows and files merged with REST fills stay models.

    ``source``: ``rest`` (REST only), ``archive`` (archive only: no REST call, missing files are reported
    as warnings, corrupt files raise ``ArchiveError``) or ``auto`` (archive, then REST for what it lacks;
    REST alone when the archive could serve fewer than ``min_candles`` candles).
    """
    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}: use one of {', '.join(SOURCES)}")
    if workers < 1:
        raise InputError(f"workers must be at least 1, not {workers}")
    stats = stats if stats is not None else ArchiveStats()
    if source == "rest" or (source == "auto" and not archivable(tf)):
        yield from _rest(client, symbol, tf, start_ms, end_ms, now_ms, stats, price)
        return
    if not archivable(tf):
        raise InputError(f"the archive path supports intervals dividing a day, not {tf.interval}: use --source rest")
    now = now_ms if now_ms is not None else closed_before(client)
    today = now - now % DAY_MS
    if source == "auto" and tf.count_between(start_ms, min(end_ms, today)) < min_candles:
        yield from _rest(client, symbol, tf, start_ms, end_ms, now, stats, price)
        return
    buffer = _Batcher()
    run = _Run(client, symbol, tf, start_ms, end_ms, source, now, stats, price)
    session = pooled_session(workers)
    fetcher = ArchiveFetcher(
        price.subject(symbol),
        tf,
        session,
        base_url or config.archive_url(),
        columnar,
        folder=price.archive_dir,
        kind=PRICE_KINDS[price],
    )
    parts = _prefetch(fetcher, plan_periods(start_ms, min(end_ms, today)), start_ms, end_ms, workers, stats)
    try:
        for part in parts:
            for batch in run.resolve(part):
                if isinstance(batch, KlineBlock):
                    yield from buffer.flush()  # keep the order: models buffered so far go first
                    yield batch
                else:
                    yield from buffer.add(batch)
        tail_start = max(start_ms, today)
        if tail_start < end_ms:
            if source == "auto":
                for batch in _rest(client, symbol, tf, tail_start, end_ms, now, stats, price):
                    yield from buffer.add(batch)
            else:
                log.warning(
                    "%s %s: [%s, %s) is not in the archive yet (today); not fetched with --source archive",
                    symbol,
                    tf.interval,
                    timeutil.iso(timeutil.ms_to_dt(tail_start)),
                    timeutil.iso(timeutil.ms_to_dt(end_ms)),
                )
                stats.unfilled_ranges.append((tail_start, end_ms))
        yield from buffer.flush()
    finally:
        parts.close()
        session.close()
    log.info(
        "%s %s archive: %d files, %d rows from archive, %d from REST, %d missing files, %d failed",
        symbol,
        tf.interval,
        stats.files,
        stats.archive_rows,
        stats.rest_rows,
        len(stats.files_missing),
        len(stats.files_failed),
    )


def _prefetch(
    fetcher: ArchiveFetcher,
    periods: list[Period],
    start_ms: int,
    end_ms: int,
    workers: int,
    stats: ArchiveStats,
) -> Generator[FilePart, None, None]:
    """Fetch periods in a pool, yielding their parts in order; at most ``workers + 1`` files outstanding.

    Outstanding = submitted and not yet handed over, plus the one the consumer is working on: the next
    submission happens only once the consumer comes back for more.
    """
    todo = iter(periods)
    pending: deque[Future[list[FilePart]]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archive")
    try:
        while True:
            while len(pending) < workers + 1:
                period = next(todo, None)
                if period is None:
                    break
                lo = max(start_ms, period.lo_ms)
                # each download runs in a copy of the caller's context: its span joins the job's trace
                pending.append(pool.submit(contextvars.copy_context().run, fetcher.fetch, period, lo, end_ms))
                stats.max_outstanding = max(stats.max_outstanding, len(pending))
            if not pending:
                return
            parts = pending.popleft().result()
            yield from parts
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


class _Batcher:
    """Coalesces small batches (daily files, REST pages) into sink-sized ones, keeping order."""

    def __init__(self, size: int = BATCH_SIZE) -> None:
        self.size = size
        self.rows: list[Kline] = []

    def add(self, batch: list[Kline]) -> Iterator[list[Kline]]:
        if not self.rows and len(batch) >= self.size:
            for i in range(0, len(batch) - len(batch) % self.size, self.size):
                yield batch[i : i + self.size]
            self.rows = batch[len(batch) - len(batch) % self.size :]
            return
        self.rows.extend(batch)
        while len(self.rows) >= self.size:
            out, self.rows = self.rows[: self.size], self.rows[self.size :]
            yield out

    def flush(self) -> Iterator[list[Kline]]:
        if self.rows:
            out, self.rows = self.rows, []
            yield out


@dataclass
class _Run:
    """Turns each file part into batches, filling what the archive lacks from REST (``auto``)."""

    client: Any
    symbol: str
    tf: Timeframe
    start_ms: int
    end_ms: int
    source: str
    now: int
    stats: ArchiveStats
    price: Price = Price.TRADE

    def _models(self, rows: list[list[str]]) -> list[Any]:
        if self.price is Price.TRADE:
            return to_klines(self.symbol, self.tf.interval, rows)
        build, subject = PRICE_MODELS[self.price].from_rest, self.price.subject(self.symbol)
        return [build(subject, self.tf.interval, row) for row in rows]

    def resolve(self, part: FilePart) -> Iterator[list[Any] | KlineBlock]:
        lo, hi = max(part.period.lo_ms, self.start_ms), min(part.period.hi_ms, self.end_ms)
        if part.error is not None:
            self.stats.files_failed.append(part.filename)
            if self.source == "archive":
                raise part.error
            log.error("%s; fetching [%s, %s) from REST instead", part.error, _iso(lo), _iso(hi))
            yield from self._fill([(lo, hi)], why=part.filename)
            return
        if part.missing:
            self.stats.files_missing.append(part.filename)
            if self.source == "archive":
                log.warning("archive file %s not found: [%s, %s) not fetched", part.filename, _iso(lo), _iso(hi))
                self.stats.unfilled_ranges.append((lo, hi))
                return
            log.info("archive file %s not found: [%s, %s) from REST", part.filename, _iso(lo), _iso(hi))
            yield from self._fill([(lo, hi)], why=part.filename)
            return
        self.stats.files += 1
        self.stats.archive_rows += len(part.block) if part.block is not None else len(part.rows)
        holes = missing_ranges(self.tf, lo, hi, part.open_ms)
        if holes and self.source == "archive":
            log.warning("archive file %s lacks %d candle range(s): not fetched", part.filename, len(holes))
            self.stats.unfilled_ranges.extend(holes)
            holes = []
        if part.block is not None:
            if not holes:
                if len(part.block):
                    yield part.block
                return
            fills = [k for batch in self._fill(holes, why=part.filename) for k in batch]
            merged = sorted(part.block.to_models() + fills, key=_open_time)
            if merged:
                yield merged
            return
        if not holes:
            for i in range(0, len(part.rows), BATCH_SIZE):  # validated chunk by chunk: writing starts early
                yield self._models(part.rows[i : i + BATCH_SIZE])
            return
        fills = [k for batch in self._fill(holes, why=part.filename) for k in batch]
        merged = sorted(self._models(part.rows) + fills, key=_open_time)
        if merged:
            yield merged

    def _fill(self, ranges: list[tuple[int, int]], why: str) -> Iterator[list[Any]]:
        for lo, hi in ranges:
            log.debug("%s %s: REST for [%s, %s) (%s)", self.symbol, self.tf.interval, _iso(lo), _iso(hi), why)
            yield from _rest(self.client, self.symbol, self.tf, lo, hi, self.now, self.stats, self.price)


def _rest(
    client: Any,
    symbol: str,
    tf: Timeframe,
    lo: int,
    hi: int,
    now_ms: int | None,
    stats: ArchiveStats,
    price: Price = Price.TRADE,
) -> Iterator[list[Any]]:
    from binance_extractor import extract  # the REST path; imported late to keep this module light

    stats.rest_ranges.append((lo, hi))
    got = 0
    for batch in extract.iter_klines(client, symbol, tf, lo, hi, now_ms=now_ms, price=price):
        got += len(batch)
        stats.rest_rows += len(batch)
        yield batch
    if got == 0:
        stats.unfilled_ranges.append((lo, hi))


def _open_time(k: Any) -> datetime:
    return k.open_time


def _iso(ms: int) -> str:
    return timeutil.iso(timeutil.ms_to_dt(ms))


__all__ = [
    "ATTEMPTS",
    "DAY_MS",
    "MICROS_THRESHOLD",
    "PREFIX",
    "SOURCES",
    "ArchiveError",
    "ArchiveFetcher",
    "ArchiveStats",
    "FilePart",
    "Period",
    "archivable",
    "iter_klines",
    "missing_ranges",
    "parse_csv",
    "parse_rows",
    "parse_zip",
    "plan_periods",
    "read_zip",
    "read_zip_bytes",
    "to_klines",
]
