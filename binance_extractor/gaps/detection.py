"""Detection: holes per (table, symbol) found inside each store (``Store.gap_queries()``), ledger excluded."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from binance_extractor import catalog
from binance_extractor.catalog import Shape
from binance_extractor.errors import ExtractorError, InputError
from binance_extractor.exchange_clock import closed_before
from binance_extractor.gaps.chunking import merge, minus_known
from binance_extractor.gaps.models import Chunk, Hole, Scan
from binance_extractor.gaps.settings import DAY_MS, FUNDING_DEFAULT_MS, HOUR_MS, GapSettings
from binance_extractor.kinds import Dataset
from binance_extractor.sinks.base import Sink, Store, stores
from binance_extractor.timeutil import dt_to_ms

log = logging.getLogger(__name__)


def db_sinks(sinks: Sequence[Sink]) -> list[Store]:
    """The stores detection can query (JSON lines output is a write-only sink)."""
    out = stores(sinks)
    if not out:
        raise InputError(
            f"gap detection needs a database sink: --sink {catalog.sink_list(catalog.STORE_NAMES, ' or ')}"
        )
    return out


def detect_range(
    sink: Store,
    dataset: Dataset,
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
    be = sink.gap_queries()
    if hi <= lo:
        return 0, []
    n, mn, mx = be.stats(dataset, symbol, lo, hi)
    holes: list[Hole] = []

    def add(start: int, end: int, missing: int, ctx: tuple[int, int] | None = None) -> None:
        if end > start and missing > 0:
            cs, ce = ctx or (start, end)
            holes.append(Hole(dataset, symbol, start, end, missing, cs, ce))

    tf = dataset.grid
    if tf is not None:
        lo, hi = tf.ceil_ms(lo), hi
        if mn is None or mx is None:
            if head and tail:
                add(lo, hi, tf.count_between(lo, hi))
            return 0, holes
        if head and mn > lo:
            add(lo, mn, tf.count_between(lo, mn))
        for prev, cur in be.kline_pairs(dataset, symbol, lo, hi, tf.ms):
            start = tf.next_open_ms(prev)
            add(start, cur, tf.count_between(start, cur))
        after = tf.next_open_ms(mx)
        if tail and after < hi:
            add(after, hi, tf.count_between(after, hi))
    elif dataset.shape is Shape.EVENTS:
        longest = FUNDING_DEFAULT_MS + settings.funding_tolerance_ms
        if mn is None or mx is None:
            if head and tail and hi - lo > longest:
                add(lo, hi, (hi - lo) // FUNDING_DEFAULT_MS)
            return 0, holes
        if head and mn - lo > longest:
            add(lo, mn, max(1, (mn - lo) // FUNDING_DEFAULT_MS), (lo, mn + 1))
        current = funding_ms or FUNDING_DEFAULT_MS
        for pair in be.event_pairs(dataset, symbol, lo, hi, current, settings.funding_tolerance_ms):
            step = max(HOUR_MS, pair.interval)
            missing = max(1, round((pair.cur - pair.prev) / step) - 1)
            add(pair.prev + 1, pair.cur, missing, (pair.ctx[0], pair.ctx[1] + 1))
        if tail and hi - mx > current + settings.funding_tolerance_ms:
            add(mx + 1, hi, max(1, (hi - mx - 1) // current), (mx, hi))  # events at mx + k * interval < hi
    else:
        if mn is None or mx is None:
            return 0, holes
        for prev_id, cur_id, prev_t, cur_t in be.id_pairs(dataset, symbol, lo, hi):
            add(prev_t, cur_t + 1, cur_id - prev_id - 1)
    return n, holes


def _known(sink: Store, dataset: Dataset, symbol: str) -> list[tuple[int, int]]:
    return [(dt_to_ms(s), dt_to_ms(e)) for s, e in sink.known_gaps(dataset, symbol)]


def _bounds(
    sink: Store, dataset: Dataset, symbol: str, start_ms: int | None, end_ms: int, settings: GapSettings
) -> tuple[int, int] | None:
    """Detection range of one symbol: [start or first stored row, end), bounded by ``lookback_days``."""
    lo = start_ms
    if lo is None:
        first = sink.first_time(dataset, symbol)
        if first is None:
            return None
        lo = dt_to_ms(first)
    if settings.lookback_days is not None:
        lo = max(lo, end_ms - int(settings.lookback_days * DAY_MS))
    if dataset.shape is Shape.IDS:  # up to the newest stored id: the tail after it is not a hole
        last = sink.last_time(dataset, symbol)
        end_ms = min(end_ms, dt_to_ms(last) + 1) if last is not None else end_ms
    return (lo, end_ms) if lo < end_ms else None


def closed_end(dataset: Dataset, end_ms: int | None, now: int) -> int:
    """Exclusive end of detection: klines up to the last candle closed by ``end`` and by ``now`` (the closed bound,
    ``exchange_clock.closed_before``: a candle whose close time is not before it is not a hole yet), the rest up
    to them."""
    end = now if end_ms is None else min(end_ms, now)
    tf = dataset.grid
    return tf.floor_ms(end) if tf is not None else end


def scan(
    sinks: Sequence[Sink],
    datasets: Sequence[Dataset],
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
    first stored row. ``end`` defaults to now (klines: the last closed candle). ``now``: the closed bound on the
    exchange's clock, ``exchange_clock.closed_before(client)`` (the one bound extraction and the ledger's evidence
    use too; without it, this machine's clock minus the margin). ``funding_hours``: each contract's current
    funding interval (``funding_intervals``); a missing tail of a 1 h or 4 h contract is found with it.
    """
    settings = settings or GapSettings.load()
    now = now if now is not None else closed_before(None)
    stores = db_sinks(sinks)
    out: list[Scan] = []
    for dataset in datasets:
        hi = closed_end(dataset, dt_to_ms(end) if end is not None else None, now)
        names = list(symbols) if symbols else sorted({s for sink in stores for s in sink.symbols(dataset)})
        for symbol in names:
            begin = (starts or {}).get(symbol) or start
            found: list[Hole] = []
            stored: list[int] = []
            known = 0
            span: tuple[int, int] | None = None
            for sink in stores:
                bounds = _bounds(sink, dataset, symbol, dt_to_ms(begin) if begin else None, hi, settings)
                if bounds is None:
                    stored.append(0)
                    continue
                lo, top = bounds
                span = (min(span[0], lo), max(span[1], top)) if span else (lo, top)
                n, holes = detect_range(
                    sink,
                    dataset,
                    symbol,
                    lo,
                    top,
                    head=True,
                    tail=dataset.shape is not Shape.IDS,
                    settings=settings,
                    funding_ms=funding_ms_of(funding_hours, symbol) if dataset.shape is Shape.EVENTS else None,
                )
                holes, covered = minus_known(holes, _known(sink, dataset, symbol))
                stored.append(n)
                known = max(known, covered)
                found.extend(holes)
            if span is None:
                continue
            merged = merge(found)
            keep = [h for h in merged if _size_ok(h, settings)]
            skipped = [h for h in merged if not _size_ok(h, settings)]
            out.append(Scan(dataset, symbol, span[0], span[1], min(stored), keep, skipped, known))
    return out


def funding_ms_of(funding_hours: Mapping[str, int] | None, symbol: str) -> int | None:
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
    chunk: Chunk, sinks: Sequence[Sink], settings: GapSettings | None = None, funding_ms: int | None = None
) -> list[Hole]:
    """Holes still open inside the chunk (ledger excluded), re-detected over its context in every DB sink."""
    found: list[Hole] = []
    for sink in db_sinks(sinks):
        _, holes = detect_range(
            sink,
            chunk.dataset,
            chunk.symbol,
            chunk.ctx_start_ms,
            chunk.ctx_end_ms,
            head=True,
            tail=chunk.dataset.shape is not Shape.IDS,
            settings=settings,
            funding_ms=funding_ms,
        )
        holes, _ = minus_known(holes, _known(sink, chunk.dataset, chunk.symbol))
        for h in holes:
            s, e = max(h.start_ms, chunk.start_ms), min(h.end_ms, chunk.end_ms)
            if s < e:
                found.append(replace(h, start_ms=s, end_ms=e) if (s, e) != (h.start_ms, h.end_ms) else h)
    return merge(found)


def onboard_starts(client: Any, symbols: Iterable[str]) -> dict[str, datetime | None]:
    """Listing dates (``full_history``): missing rows from there to the first stored one count as holes."""
    return {s: client.onboard_time(s) for s in symbols}
