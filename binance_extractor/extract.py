"""Paginated extraction that neither drops nor repeats a row, and never emits an open candle.

Klines: a range is cut into windows of ``limit`` candles; each window is one request bounded by
``startTime``/``endTime``, so windows can be fetched concurrently (several requests in flight, which is what lets
one process approach the weight budget) and still be yielded in order. Should a window come back full but short
of its end, the next page starts at the last open_time + interval. Only candles with ``close_time < now`` are
emitted, judged by the exchange's clock (``exchange_clock.closed_before``, the library's one closed bound), not this
machine's; funding events and trades stop at the same bound. Funding and aggregate trades are paginated by cursor
over any range.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from binance_extractor.client import BinanceFuturesClient
from binance_extractor.derivative_models import PRICE_MODELS, PriceKline
from binance_extractor.errors import ExtractorError, ValidationError
from binance_extractor.exchange_clock import closed_before
from binance_extractor.models import AggTrade, FundingRate, Kline, Trade
from binance_extractor.prices import Price
from binance_extractor.timeframes import Timeframe
from binance_extractor.timeutil import dt_to_ms, iso, ms_to_dt

log = logging.getLogger(__name__)

KLINE_PAGE = 499  # the most candles per unit of weight (limit 499 costs 2)
FUNDING_PAGE = 1000
AGG_PAGE = 1000
AGG_WINDOW_MS = 3_600_000  # half-open [lo, lo + 1 h): the request's endTime is lo + 1 h - 1 ms, less than 1 h away
STREAM_DEPTH = 2  # pages buffered per window being fetched ahead of the consumer
T = TypeVar("T")


class StuckCursorError(ExtractorError):
    """The exchange answered a page that does not move past the previous one (same page again, cursor ignored)."""


class HistoryUnavailableError(ExtractorError):
    """The exchange answered "no rows" for a range it holds data for but no longer serves."""


def ordered_map(fn: Callable[[Any], T], items: list[Any], workers: int) -> Iterator[T]:
    """Apply ``fn`` concurrently, yielding results in input order with at most 2*workers outstanding."""
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="binance-page") as pool:
        pending: deque[Future[T]] = deque()
        it = iter(items)
        try:
            for item in it:
                # each page runs in a copy of the caller's context, so its spans join the caller's trace
                pending.append(pool.submit(contextvars.copy_context().run, fn, item))
                if len(pending) >= workers * 2:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


def kline_windows(tf: Timeframe, start_ms: int, end_ms: int, page: int = KLINE_PAGE) -> list[tuple[int, int]]:
    """Half-open windows of at most ``page`` candles covering [start_ms, end_ms)."""
    windows: list[tuple[int, int]] = []
    cursor = tf.ceil_ms(start_ms)
    while cursor < end_ms:
        if tf.is_monthly:
            nxt = cursor
            for _ in range(page):
                nxt = tf.next_open_ms(nxt)
        else:
            nxt = cursor + page * tf.ms
        windows.append((cursor, min(nxt, end_ms)))
        cursor = nxt
    return windows


def iter_klines(
    client: BinanceFuturesClient,
    symbol: str,
    tf: Timeframe,
    start_ms: int,
    end_ms: int,
    *,
    now_ms: int | None = None,
    page: int = KLINE_PAGE,
    price: Price = Price.TRADE,
) -> Iterator[list[Any]]:
    """Validated batches of closed candles opening in [start_ms, end_ms), in order, each candle once.

    ``price`` picks the series (trade klines, or mark/index/premium-index klines: ``PriceKline`` models, the
    index one under the symbol's pair); paging, windows and the closed bound are the same for all of them.
    """
    now = now_ms if now_ms is not None else closed_before(client)
    stop = min(end_ms, tf.floor_ms(now))  # the candle opening at floor(now) is still in progress
    windows = kline_windows(tf, start_ms, stop, page)

    def fetch(window: tuple[int, int]) -> list[Any]:
        return _fetch_kline_window(client, symbol, tf, window[0], window[1], now, page, price)

    for batch in ordered_map(fetch, windows, client.max_in_flight):
        if batch:
            yield batch


def _fetch_kline_window(
    client: BinanceFuturesClient,
    symbol: str,
    tf: Timeframe,
    start: int,
    end: int,
    now: int,
    page: int,
    price: Price = Price.TRADE,
) -> list[Any]:
    out: list[Any] = []
    cursor = start
    build: Callable[[str, str, list[Any]], Kline | PriceKline] = (
        Kline.from_rest if price is Price.TRADE else PRICE_MODELS[price].from_rest
    )
    subject = price.subject(symbol)  # the index is the pair's
    while cursor < end:
        limit = min(page, max(1, tf.count_between(cursor, end)))
        if price is Price.TRADE:
            rows = client.klines(symbol, tf.interval, cursor, end - 1, limit=limit)
        else:
            rows = client.price_klines(price, symbol, tf.interval, cursor, end - 1, limit=limit)
        what = "klines" if price is Price.TRADE else price.archive_dir
        check_cursor(what, subject, cursor, [int(r[0]) for r in rows[:1]])  # startTime ignored: not a window
        last_open = None
        for row in rows:
            open_ms = int(row[0])
            if open_ms < cursor or open_ms >= end or (last_open is not None and open_ms <= last_open):
                continue  # outside the window or out of order: never trusted, never duplicated
            if int(row[6]) >= now:
                continue  # still open
            out.append(build(subject, tf.interval, row))
            last_open = open_ms
        if len(rows) < limit or last_open is None:
            break
        cursor = tf.next_open_ms(last_open)  # a full page short of the window end: continue after it
    return out


def iter_funding(
    client: BinanceFuturesClient, symbol: str, start_ms: int, end_ms: int, *, now_ms: int | None = None
) -> Iterator[list[FundingRate]]:
    """Funding events in [start_ms, end_ms), paginated by fundingTime (1h, 4h or 8h apart, with ms jitter)."""
    stop = min(end_ms, (now_ms if now_ms is not None else closed_before(client)) + 1)
    cursor = start_ms
    while cursor < stop:
        rows = client.funding_rate(symbol, cursor, stop - 1, limit=FUNDING_PAGE)
        check_cursor("fundingRate", symbol, cursor, [int(r["fundingTime"]) for r in rows[:1]])
        batch: list[FundingRate] = []
        last = cursor - 1
        for row in rows:
            t = int(row["fundingTime"])
            if t < cursor or t >= stop or t <= last:
                continue
            batch.append(FundingRate.from_rest({**row, "symbol": row.get("symbol", symbol)}))
            last = t
        if batch:
            yield batch
        if len(rows) < FUNDING_PAGE or not batch:
            break
        cursor = last + 1


def agg_windows(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """Half-open windows of at most one hour covering [start_ms, end_ms) (one request each when quiet)."""
    windows = []
    cursor = start_ms
    while cursor < end_ms:
        windows.append((cursor, min(cursor + AGG_WINDOW_MS, end_ms)))
        cursor = windows[-1][1]
    return windows


def iter_agg_trades(
    client: BinanceFuturesClient, symbol: str, start_ms: int, end_ms: int, *, now_ms: int | None = None
) -> Iterator[list[AggTrade]]:
    """Aggregate trades with time in [start_ms, end_ms), page by page: hour windows fetched concurrently.

    Pages are yielded as they arrive (a volatile hour holds hundreds of thousands of trades), in order; a window
    fetched ahead of the consumer holds at most ``STREAM_DEPTH`` pages.
    """
    stop = min(end_ms, now_ms if now_ms is not None else closed_before(client))

    def fetch(window: tuple[int, int]) -> Iterator[list[AggTrade]]:
        lo, hi = window
        last_id: int | None = None
        rows = client.agg_trades(symbol, start_ms=lo, end_ms=hi - 1, limit=AGG_PAGE)
        while True:
            page: list[AggTrade] = []
            for row in rows:
                if lo <= int(row["T"]) < hi and (last_id is None or int(row["a"]) > last_id):
                    page.append(AggTrade.from_rest(symbol, row))
                    last_id = page[-1].agg_trade_id
            if page:
                yield page
            if len(rows) < AGG_PAGE or not rows or int(rows[-1]["T"]) >= hi:
                return
            from_id = int(rows[-1]["a"]) + 1
            rows = client.agg_trades(symbol, from_id=from_id, limit=AGG_PAGE)
            check_cursor("aggTrades", symbol, from_id, [int(r["a"]) for r in rows[:1]])

    yield from ordered_stream(fetch, agg_windows(start_ms, stop), client.max_in_flight)


def check_cursor(endpoint: str, symbol: str, expected: int, first: list[int]) -> None:
    """A page asked from ``expected`` on must start there or later; anything else would loop or repeat rows."""
    if first and first[0] < expected:
        raise StuckCursorError(
            f"{endpoint} {symbol}: the exchange ignored the cursor (asked from {expected}, got {first[0]} again); "
            "stopping instead of looping"
        )


def ordered_stream(
    fn: Callable[[Any], Iterator[T]], items: list[Any], workers: int, depth: int = STREAM_DEPTH
) -> Iterator[T]:
    """Chain ``fn(item)`` for every item in order, running up to ``workers`` items ahead in threads.

    Each running item buffers at most ``depth`` results, so memory is bounded by ``workers * depth`` results
    whatever an item yields in total.
    """
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield from fn(item)
        return
    done = object()
    cancel = threading.Event()

    def run(item: Any, out: queue.Queue[Any]) -> None:
        def put(value: Any) -> bool:
            while not cancel.is_set():
                try:
                    out.put(value, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for value in fn(item):
                if not put((True, value)):
                    return
        except BaseException as exc:
            put((False, exc))
            return
        put(done)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="binance-page") as pool:
        running: deque[queue.Queue[Any]] = deque()
        todo = iter(items)

        def start_next() -> None:
            for item in todo:
                out: queue.Queue[Any] = queue.Queue(maxsize=depth)
                # each item runs in a copy of the caller's context, so its spans join the caller's trace
                pool.submit(contextvars.copy_context().run, run, item, out)
                running.append(out)
                return

        try:
            for _ in range(workers):
                start_next()
            while running:
                got = running[0].get()
                if got is done:
                    running.popleft()
                    start_next()
                    continue
                ok, value = got
                if not ok:
                    raise value
                yield value
        finally:
            cancel.set()


def iter_historical_trades(
    client: BinanceFuturesClient, symbol: str, start_ms: int, end_ms: int, *, now_ms: int | None = None
) -> Iterator[list[Trade]]:
    """Individual trades in [start_ms, end_ms): the first id comes from aggTrades, then ``historicalTrades``.

    historicalTrades only serves recent months and answers an older ``fromId`` with an empty page, so an empty
    page before the range's end while newer trades exist is an error naming the unserved range, never "done".
    """
    stop = min(end_ms, now_ms if now_ms is not None else closed_before(client))
    first_id = None
    for lo, hi in agg_windows(start_ms, stop):  # find the first trade id at or after start
        rows = client.agg_trades(symbol, start_ms=lo, end_ms=hi - 1, limit=1)
        if rows:
            first_id = int(rows[0]["f"])
            break
    if first_id is None:
        return
    from_id = first_id
    reached = start_ms  # every trade before this time has been yielded
    while True:
        rows = client.historical_trades(symbol, from_id=from_id, limit=500)
        check_cursor("historicalTrades", symbol, from_id, [int(r["id"]) for r in rows[:1]])
        if not rows:
            _check_unserved(client, symbol, from_id, reached, stop)
            return
        batch: list[Trade] = []
        done = False
        for row in rows:
            t = int(row["time"])
            if t >= stop:
                done = True
                break
            if int(row["id"]) >= from_id and t >= start_ms:
                batch.append(Trade.from_rest(symbol, row))
                reached = t
        if batch:
            yield batch
        if done or len(rows) < 500:
            return
        from_id = int(rows[-1]["id"]) + 1


def _check_unserved(client: BinanceFuturesClient, symbol: str, from_id: int, reached: int, stop: int) -> None:
    """An empty historicalTrades page: the end of the data only if no trade with id >= ``from_id`` exists."""
    newest = client.trades(symbol, limit=1)
    if newest and int(newest[-1]["id"]) >= from_id:
        raise HistoryUnavailableError(
            f"historicalTrades {symbol}: the exchange no longer serves trades from id {from_id} "
            f"({_iso(reached)} to {_iso(stop)}); use --kind agg (aggregate trades) for that range"
        )


def _iso(ms: int) -> str:
    return iso(ms_to_dt(ms))


__all__ = [
    "HistoryUnavailableError",
    "StuckCursorError",
    "ValidationError",
    "agg_windows",
    "closed_before",
    "dt_to_ms",
    "iter_agg_trades",
    "iter_funding",
    "iter_historical_trades",
    "iter_klines",
    "kline_windows",
    "ordered_map",
    "ordered_stream",
]
