"""Open interest and the long/short ratio (5-minute marks) from the ``/futures/data`` statistics endpoints
(``openInterestHist``, ``globalLongShortAccountRatio``) and the archive's daily metrics files, which hold both.

Each series is a catalog entry (``DataKind.OPEN_INTEREST``, ``DataKind.LONG_SHORT_RATIO``): its endpoint and its
model (``from_rest``, ``from_metrics``) are all that differ; the functions below take the kind.

REST serves only the latest 30 days (docs/DATASETS.md): a range starting earlier must come from the archive
(``iter_archive``), whose ``metrics`` files go back years; ``plan_sources`` splits a range at the horizon.
Paging: windows of ``PAGE`` samples, each one request bounded by ``startTime``/``endTime``, fetched concurrently
through ``extract.ordered_map`` and yielded in order; the endpoint answers the *latest* ``limit`` rows between the
bounds, so a full page that starts after its window's start is followed by the part before it.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

import requests

from binance_extractor import config
from binance_extractor.archive_fetch import ArchiveFetcher, pooled_session
from binance_extractor.archive_periods import DAY_MS, Period, day_period
from binance_extractor.catalog import DataKind
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.errors import InputError, ValidationError
from binance_extractor.exchange_clock import closed_before
from binance_extractor.extract import check_cursor, ordered_map
from binance_extractor.timeframes import Timeframe
from binance_extractor.timeutil import iso, ms_to_dt

log = logging.getLogger(__name__)

PERIOD = "5m"
STEP_MS = 300_000
PAGE = 500  # the endpoint's maximum limit (weight 0; its own 1000 requests / 5 min)
HORIZON_MS = 30 * DAY_MS  # REST serves only the latest 30 days
HORIZON_MARGIN_MS = 15 * 60_000  # a REST request starts this far inside the horizon (clocks, slow pages)
M5 = Timeframe("m5", "5m")  # the open-interest grid


def rest_floor(now_ms: int) -> int:
    """The oldest time a REST request may ask for at exchange time ``now_ms`` (on the 5-minute grid)."""
    t = now_ms - HORIZON_MS + HORIZON_MARGIN_MS
    return t + (-t) % STEP_MS


def plan_sources(start_ms: int, end_ms: int, now_ms: int) -> list[tuple[str, int, int]]:
    """Split ``[start_ms, end_ms)`` into ("archive", lo, hi) before the REST horizon and ("rest", lo, hi) after."""
    floor = rest_floor(now_ms)
    out: list[tuple[str, int, int]] = []
    if start_ms < min(floor, end_ms):
        out.append(("archive", start_ms, min(floor, end_ms)))
    if end_ms > max(floor, start_ms):
        out.append(("rest", max(floor, start_ms), end_ms))
    return out


def require_rest_range(start_ms: int, now_ms: int, kind: DataKind = DataKind.OPEN_INTEREST) -> None:
    """A REST-only request older than the horizon is one clear input error, before any request."""
    floor = rest_floor(now_ms)
    if start_ms < floor:
        raise InputError(
            f"{kind.value} from {iso(ms_to_dt(start_ms))} is older than the 30 days the REST endpoint serves "
            f"(it starts at {iso(ms_to_dt(floor))}): use --source archive or --source auto"
        )


def iter_rest(
    client: BinanceFuturesClient,
    symbol: str,
    start_ms: int,
    end_ms: int,
    *,
    now_ms: int | None = None,
    kind: DataKind = DataKind.OPEN_INTEREST,
) -> Iterator[list[Any]]:
    """Samples with time in ``[start_ms, end_ms)`` before the closed bound, in order, each once (REST only)."""
    now = now_ms if now_ms is not None else closed_before(client)
    require_rest_range(start_ms, now, kind)
    stop = min(end_ms, now)
    first = start_ms + (-start_ms) % STEP_MS
    windows = [(lo, min(lo + PAGE * STEP_MS, stop)) for lo in range(first, stop, PAGE * STEP_MS)]

    def fetch(window: tuple[int, int]) -> list[Any]:
        return _fetch_window(client, kind, symbol, window[0], window[1])

    for batch in ordered_map(fetch, windows, client.max_in_flight):
        if batch:
            yield batch


def _fetch_window(client: BinanceFuturesClient, kind: DataKind, symbol: str, lo: int, hi: int) -> list[Any]:
    """One window; end-anchored pages: while a full page starts after ``lo``, ask for the part before it."""
    found: dict[int, Any] = {}
    top = hi
    endpoint, model = kind.entry.endpoint, cast(Any, kind.model)  # a statistic's model: from_rest, from_metrics
    while top > lo:
        rows = client.statistics(endpoint, symbol, PERIOD, lo, top - 1, limit=PAGE)
        times = [int(r["timestamp"]) for r in rows]
        check_cursor(endpoint.rsplit("/", 1)[-1], symbol, lo, times[:1])  # startTime ignored: not a window
        for row in rows:
            t = int(row["timestamp"])
            if lo <= t < top and t not in found:
                found[t] = model.from_rest({**row, "symbol": row.get("symbol", symbol)})
        inside = [t for t in times if lo <= t < top]
        if len(rows) < PAGE or not inside or min(inside) <= lo:
            break
        top = min(inside)  # the page was full and did not reach lo: the rows before it are still to come
    return [found[t] for t in sorted(found)]


# ----------------------------------------------------------------------------- archive


def parse_metrics(text: str, lo_ms: int, hi_ms: int) -> tuple[list[list[str]], list[int]]:
    """A daily metrics CSV -> its rows in ``[lo_ms, hi_ms)`` (header skipped) and their times in ms, sorted."""
    out: dict[int, list[str]] = {}
    for row in csv.reader(io.StringIO(text)):
        if not row or row[0] == "create_time":
            continue
        t = _metrics_time(row)
        if lo_ms <= t < hi_ms and t not in out:
            out[t] = row
    times = sorted(out)
    return [out[t] for t in times], times


def _metrics_time(row: list[str]) -> int:
    """A metrics row's ``create_time`` (``YYYY-MM-DD HH:MM:SS`` UTC) in ms; a malformed one is a ValidationError."""
    try:
        return int(datetime.fromisoformat(row[0].strip() + "+00:00").timestamp() * 1000)
    except (IndexError, ValueError):
        raise ValidationError(f"malformed metrics row {row!r:.120}") from None


def metrics_periods(start_ms: int, end_ms: int) -> list[Period]:
    """The daily metrics files covering ``[start_ms, end_ms)`` (there are no monthly metrics files)."""
    return [day_period(t) for t in range(start_ms - start_ms % DAY_MS, end_ms, DAY_MS)]


def iter_archive(
    symbol: str,
    start_ms: int,
    end_ms: int,
    base_url: str,
    *,
    session: requests.Session | None = None,
    kind: DataKind = DataKind.OPEN_INTEREST,
) -> Iterator[tuple[Period, list[Any] | None]]:
    """Per day file: (period, verified samples in the range), or (period, None) when the file is not published.

    Downloads and checksums go through ``ArchiveFetcher`` (the trade klines' retries and diagnostics).
    """
    fetcher = ArchiveFetcher(symbol, M5, session or pooled_session(2), base_url, folder="metrics", parse=parse_metrics)
    for period in metrics_periods(start_ms, end_ms):
        part = fetcher.fetch_file(period, max(start_ms, period.lo_ms), min(end_ms, period.hi_ms))
        if part.error is not None:
            raise part.error
        if part.missing:
            yield period, None
            continue
        yield period, [cast(Any, kind.model).from_metrics(row) for row in part.rows]


def iter_source(
    client: BinanceFuturesClient,
    symbol: str,
    start_ms: int,
    end_ms: int,
    *,
    source: str = "auto",
    now_ms: int | None = None,
    base_url: str | None = None,
    kind: DataKind = DataKind.OPEN_INTEREST,
) -> Iterator[list[Any]]:
    """Samples in ``[start_ms, end_ms)`` before the closed bound, in order, from where ``source`` says.

    ``rest``: REST only (a range older than the 30-day horizon is one input error, before any request);
    ``archive``: daily metrics files only (a file not published is a warning, its range left open);
    ``auto``: the metrics files before the REST horizon, REST after it. A day the archive lacks before the horizon
    stays open: nothing else serves it (the gap filler's evidence rule records such holes).
    """
    if source not in ("auto", "rest", "archive"):
        raise InputError(f"unknown source {source!r}: use one of auto, rest, archive")
    now = now_ms if now_ms is not None else closed_before(client)
    stop = min(end_ms, now)
    if start_ms >= stop:
        return
    if source == "rest":
        yield from iter_rest(client, symbol, start_ms, stop, now_ms=now, kind=kind)
        return
    plan = [("archive", start_ms, stop)] if source == "archive" else plan_sources(start_ms, stop, now)
    for where, lo, hi in plan:
        if where == "rest":
            yield from iter_rest(client, symbol, lo, hi, now_ms=now, kind=kind)
            continue
        for period, rows in iter_archive(symbol, lo, hi, base_url or config.archive_url(), kind=kind):
            if rows is None:
                log.warning(
                    "%s metrics file of %s not published: [%s, %s) left open",
                    symbol,
                    period.label,
                    iso(ms_to_dt(max(lo, period.lo_ms))),
                    iso(ms_to_dt(min(hi, period.hi_ms))),
                )
            elif rows:
                yield rows


def holes(have: list[int], lo_ms: int, hi_ms: int) -> list[tuple[int, int]]:
    """Half-open ranges of the 5-minute grid in ``[lo_ms, hi_ms)`` with no sample."""
    out: list[tuple[int, int]] = []
    seen = set(have)
    t = lo_ms + (-lo_ms) % STEP_MS
    start: int | None = None
    while t < hi_ms:
        if t in seen:
            if start is not None:
                out.append((start, t))
                start = None
        elif start is None:
            start = t
        t += STEP_MS
    if start is not None:
        out.append((start, hi_ms))
    return out


__all__: list[Any] = ["iter_archive", "iter_rest", "iter_source", "parse_metrics", "plan_sources", "require_rest_range"]
