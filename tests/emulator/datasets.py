"""The emulator's mark-price, index-price and premium-index klines and open interest (issue #23), REST and archive.

Kept apart from ``server.py`` (which only looks routes, bodies and archive paths up here) so other work on the
emulator does not collide with it. Shapes, parameters, weights and limits follow the exchange's documentation
(docs/DATASETS.md lists the sources):

- ``GET /fapi/v1/markPriceKlines`` and ``/fapi/v1/premiumIndexKlines`` (``symbol``), ``/fapi/v1/indexPriceKlines``
  (``pair``: the index is per pair; sending ``symbol`` instead is -1102): ``interval``, ``startTime``, ``endTime``,
  ``limit`` (default 500, max 1500), weight 1/2/5/10 by limit exactly as ``/fapi/v1/klines``. Rows are the
  12-field kline rows with ``"0"`` for the fields Binance marks "ignore" and field 8 the number of basic data
  (price samples). The candles open exactly when the trade candles do (same onboard date, outages, live candle
  with its close time in the future); prices are derived deterministically from the trade candle (mark/index
  within about 0.1 % of it with 8 decimals; premium a small signed number with 8 decimals).
- ``GET /futures/data/globalLongShortAccountRatio``: as ``openInterestHist`` (same parameters, limit, horizon and
  the same IP limit, counted together), rows ``longShortRatio`` (the metrics file's ``count_long_short_ratio``),
  ``longAccount``, ``shortAccount`` (4 decimals), ``timestamp``.
- ``GET /futures/data/openInterestHist``: ``symbol``, ``period`` (5m 15m 30m 1h 2h 4h 6h 12h 1d), ``limit``
  (default 30, max 500), ``startTime``/``endTime``; weight 0 but its own IP limit of ``oi_limit`` requests
  (1000) per ``oi_window_seconds`` (300): over it, 429 -1003 like the fundingRate limit. Only the latest
  ``OI_HORIZON_MS`` (30 days) is served: a ``startTime`` or ``endTime`` older than that is 400 -1130 "parameter
  'startTime' is invalid." (the exchange refuses such a startTime; the message is this emulator's). Between the
  bounds the most recent ``limit`` rows are returned (end-anchored, as the exchange does for these statistics).
  A row at ``t`` (a multiple of the period) exists once ``t <= now``; ``timestamp`` is an integer (ms).
- Archive: ``data/futures/um/{monthly,daily}/{markPriceKlines,indexPriceKlines,premiumIndexKlines}/SYM/TF/
  SYM-TF-YYYY-MM[-DD].zip`` (the kline CSV layout, header from 2022, microseconds from 2025 like the trade
  klines) and ``data/futures/um/daily/metrics/SYM/SYM-metrics-YYYY-MM-DD.zip`` (header always; ``create_time``
  ``YYYY-MM-DD HH:MM:SS``; 288 rows a day, the same open interest REST serves), each with ``.CHECKSUM``.
  ``emulator.archive_missing`` / ``archive_corrupt`` apply by file name as for trade klines.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tests.emulator import archive as A
from tests.emulator import data as D

OI_HORIZON_MS = 30 * D.DAY
OI_PERIODS = {"5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "4h": 240, "6h": 360, "12h": 720, "1d": 1440}
OI_STEP_MS = 5 * D.MINUTE
PRICE_PATHS = {
    "/fapi/v1/markPriceKlines": "mark",
    "/fapi/v1/indexPriceKlines": "index",
    "/fapi/v1/premiumIndexKlines": "premium",
}
OI_PATH = "/futures/data/openInterestHist"
LS_PATH = "/futures/data/globalLongShortAccountRatio"
STAT_PATHS = (OI_PATH, LS_PATH)  # the /futures/data statistics: one 1000 / 5 min IP limit counted here for both
ARCHIVE_DIRS = {"markPriceKlines": "mark", "indexPriceKlines": "index", "premiumIndexKlines": "premium"}
METRICS_HEADER = (
    "create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,"
    "sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio"
)
_Q8 = Decimal("0.00000001")
_LOCK = threading.Lock()
_PRICE_RE = re.compile(
    r"^/?data/futures/um/(?P<kind>monthly|daily)/(?P<dir>markPriceKlines|indexPriceKlines|premiumIndexKlines)/"
    r"(?P<sym>[A-Z0-9]+)/(?P<iv>\w+)/"
    r"(?P<name>(?P=sym)-(?P=iv)-(?P<y>\d{4})-(?P<m>\d{2})(?:-(?P<d>\d{2}))?\.zip)(?P<check>\.CHECKSUM)?$"
)
_METRICS_RE = re.compile(
    r"^/?data/futures/um/daily/metrics/(?P<sym>[A-Z0-9]+)/"
    r"(?P<name>(?P=sym)-metrics-(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})\.zip)(?P<check>\.CHECKSUM)?$"
)


def _api_error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> Exception:
    from tests.emulator.server import ApiError

    return ApiError(status, code, msg, headers)


# ----------------------------------------------------------------------------- derived prices


def _eps(seed: int, t: int, salt: int) -> Decimal:
    """A deterministic relative offset in [-0.001, 0.001] with 7 significant places."""
    return Decimal((D.mix(seed ^ (t * 1_000_003 + salt)) % 20_001) - 10_000) / Decimal(10_000_000)


def derive_row(kind: str, symbol: str, interval: str, row: list[Any], now: int) -> list[Any]:
    """The ``kind`` ("mark", "index", "premium") candle of the trade candle ``row``: same open/close times."""
    t, close = int(row[0]), int(row[6])
    seed = D.seed_of(symbol + kind)
    live = close >= now
    span = (min(now, close + 1) - t) if live else (close + 1 - t)
    samples = max(1, span // (5000 if kind == "premium" else 1000))
    if kind == "premium":
        base = _eps(seed, t, 1) / 2
        o = base
        c = base + _eps(seed, t, 2) / 4
        h = max(o, c) + abs(_eps(seed, t, 3)) / 8
        low = min(o, c) - abs(_eps(seed, t, 4)) / 8
        prices = [o, h, low, c]
    else:
        factor = 1 + _eps(seed, t, 1)  # one positive factor per candle keeps low <= open, close <= high
        prices = [Decimal(str(p)) * factor for p in row[1:5]]
    o, h, low, c = (p.quantize(_Q8) for p in prices)
    h, low = max(h, o, c), min(low, o, c)
    return [t, D.dec(o), D.dec(h), D.dec(low), D.dec(c), "0", close, "0", int(samples), "0", "0", "0"]


def query_price_klines(
    emu: Any, kind: str, symbol: str, interval: str, start: int | None, end: int | None, limit: int
) -> list[list[Any]]:
    """Exactly what the ``kind`` price-kline endpoint returns (may include the live candle)."""
    now = emu.now_ms()
    return [derive_row(kind, symbol, interval, r, now) for r in emu.query_klines(symbol, interval, start, end, limit)]


def price_rows(emu: Any, kind: str, symbol: str, interval: str, lo: int, hi: int, include_open: bool = False) -> list:
    """Every ``kind`` candle opening in [lo, hi] as REST serves it (closed only unless ``include_open``)."""
    now = emu.now_ms()
    rows = emu.klines_rows(symbol, interval, lo, hi, include_open=include_open)
    return [derive_row(kind, symbol, interval, r, now) for r in rows]


# ----------------------------------------------------------------------------- open interest


def oi_row(emu: Any, symbol: str, t: int) -> dict[str, Any]:
    """The open-interest sample at ``t`` (a multiple of 5 minutes): contracts and their value, 8 decimals."""
    spec = emu.symbols[symbol]
    seed = D.seed_of(symbol + "oi")
    drift = math.sin(t / (3 * D.DAY) * 2 * math.pi + (seed % 360)) * 0.2
    units = int(1_000_000 * (1 + drift)) * 1000 + D.mix(seed ^ t) % 1000  # contracts * 1000, 3 dp
    oi = Decimal(units) / 1000
    price = Decimal(str(spec.base_price)) * (1 + _eps(seed, t, 7) * 50)
    return {
        "symbol": symbol,
        "sumOpenInterest": D.dec(oi.quantize(_Q8)),
        "sumOpenInterestValue": D.dec((oi * price).quantize(_Q8)),
        "CMCCirculatingSupply": D.dec((oi * 97).quantize(Decimal("0.001"))),
        "timestamp": t,
    }


def _oi_times(emu: Any, symbol: str, step: int, lo: int, hi: int) -> list[int]:
    """Sample times in [lo, hi] on the ``step`` grid, inside the symbol's life and outside its outages."""
    spec = emu.symbols[symbol]
    first = max(lo, spec.onboard_ms)
    last = hi if spec.delist_ms is None else min(hi, spec.delist_ms - 1)
    t = -(-first // step) * step
    out = []
    while t <= last:
        if emu._out(symbol, t) is None:
            out.append(t)
        t += step
    return out


def query_open_interest(
    emu: Any, symbol: str, period: str, start: int | None, end: int | None, limit: int
) -> list[dict[str, Any]]:
    """Exactly what ``/futures/data/openInterestHist`` returns: the latest ``limit`` rows in the bounds."""
    now = emu.now_ms()
    horizon = now - OI_HORIZON_MS
    step = OI_PERIODS[period] * D.MINUTE
    hi = now if end is None else min(end, now)
    lo = max(horizon, start if start is not None else hi - (limit + 1) * step)
    times = _oi_times(emu, symbol, step, lo, hi)[-limit:]
    return [oi_row(emu, symbol, t) for t in times]


def _ratios(symbol: str, t: int) -> list[str]:
    """The metrics file's four ratio columns at ``t``; the third (``count_long_short_ratio``) is the global
    long/short account ratio REST serves."""
    h = D.mix(D.seed_of(symbol + "ls") ^ t)
    return [D.fmt(50_000_000 + (h >> shift) % 150_000_000, 8) for shift in (0, 20, 40, 8)]


def ls_row(emu: Any, symbol: str, t: int) -> dict[str, Any]:
    """``/futures/data/globalLongShortAccountRatio``'s row at ``t``: the ratio (as the metrics file has it) and the
    account shares it implies, 4 decimals as Binance shows them."""
    ratio = Decimal(_ratios(symbol, t)[2])
    long_share = (ratio / (1 + ratio)).quantize(Decimal("0.0001"))
    return {
        "symbol": symbol,
        "longShortRatio": D.dec(ratio),
        "longAccount": D.dec(long_share),
        "shortAccount": D.dec(1 - long_share),
        "timestamp": t,
    }


def metrics_rows(emu: Any, symbol: str, day_lo: int) -> list[list[str]]:
    """One daily metrics file's rows: the 5-minute open interest of that day (no row where REST has none)."""
    now = emu.now_ms()
    out = []
    for t in _oi_times(emu, symbol, OI_STEP_MS, day_lo, min(day_lo + D.DAY - 1, now)):
        r = oi_row(emu, symbol, t)
        ratios = _ratios(symbol, t)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t // 1000))
        out.append([stamp, symbol, r["sumOpenInterest"], r["sumOpenInterestValue"], *ratios])
    return out


# ----------------------------------------------------------------------------- REST


def _kline_weight(params: dict[str, str]) -> int:
    from tests.emulator.server import _kline_weight as weight

    return weight(params)


def route(path: str) -> tuple[Callable[[dict[str, str]], int], bool] | None:
    """(weight function, counts in the fundingRate limit) for the paths served here, else None."""
    if path in PRICE_PATHS:
        return _kline_weight, False
    if path in STAT_PATHS:
        return (lambda p: 0), False
    return None


def admit(emu: Any, path: str) -> Exception | None:
    """The openInterestHist IP limit (``oi_limit`` requests per ``oi_window_seconds``), counted like the
    fundingRate one: fixed windows on the rate-limit clock; a refused request is not counted."""
    if path not in STAT_PATHS:
        return None
    limit = getattr(emu, "oi_limit", 1000)
    window = getattr(emu, "oi_window_seconds", 300)
    now = emu._wall()
    with _LOCK:
        w = int(now // window)
        if getattr(emu, "_oi_window", None) != w:
            emu._oi_window, emu._oi_used = w, 0
        if emu._oi_used + 1 > limit:
            retry = max(1, math.ceil((w + 1) * window - now))
            msg = f"Too many requests; openInterestHist is limited to {limit} requests per 5 minutes per IP."
            return _api_error(429, -1003, msg, {"Retry-After": str(retry)})
        emu._oi_used += 1
        emu.oi_requests = getattr(emu, "oi_requests", 0) + 1
    return None


def serve(emu: Any, path: str, params: dict[str, str]) -> bytes | None:
    """The body for a path served here (errors raised as the server's ApiError), None for other paths."""
    from tests.emulator import server as S

    if path in PRICE_PATHS:
        kind = PRICE_PATHS[path]
        name = "pair" if kind == "index" else "symbol"
        if not params.get(name):
            raise S._mandatory(name)
        spec = emu._spec(params[name])
        interval = params.get("interval")
        if not interval:
            raise S._mandatory("interval")
        if interval not in D.INTERVALS:
            raise _api_error(400, -1120, "Invalid interval.")
        start, end = S._int_param(params, "startTime"), S._int_param(params, "endTime")
        limit = S._limit(params, 500, 1500)
        if start is not None and end is not None and start > end:
            raise _api_error(400, -1023, "Start time is greater than end time.")
        rows = query_price_klines(emu, kind, spec.symbol, interval, start, end, limit)
        return json.dumps(rows, separators=(",", ":")).encode()
    if path in STAT_PATHS:
        spec = emu._spec(params.get("symbol"))
        period = params.get("period")
        if not period:
            raise S._mandatory("period")
        if period not in OI_PERIODS:
            raise _api_error(400, -1130, "Data sent for parameter 'period' is not valid.")
        limit = S._limit(params, 30, 500)
        start, end = S._int_param(params, "startTime"), S._int_param(params, "endTime")
        horizon = emu.now_ms() - OI_HORIZON_MS
        for name, value in (("startTime", start), ("endTime", end)):
            if value is not None and value < horizon:
                raise _api_error(400, -1130, f"parameter '{name}' is invalid.")
        if start is not None and end is not None and start > end:
            raise _api_error(400, -1023, "Start time is greater than end time.")
        rows = query_open_interest(emu, spec.symbol, period, start, end, limit)
        if path == LS_PATH:
            rows = [ls_row(emu, spec.symbol, r["timestamp"]) for r in rows]
        return json.dumps(rows, separators=(",", ":")).encode()
    return None


# ----------------------------------------------------------------------------- archive


def archive(emu: Any, path: str) -> tuple[int, dict[str, str], bytes] | bool | None:
    """Serve a price-kline or metrics archive path; False when the path is not one of those."""
    path = path.split("?", 1)[0]
    price, metrics = _PRICE_RE.match(path), _METRICS_RE.match(path)
    if price is None and metrics is None:
        return False
    requests_log, _ = A._state(emu)  # the request log and fault sets the trade-kline archive keeps
    requests_log.append(path)
    if getattr(emu, "latency", 0):
        time.sleep(emu.latency)
    return _price_file(emu, price) if price is not None else _metrics_file(emu, metrics)  # type: ignore[arg-type]


def _finish(emu: Any, name: str, check: bool, body: bytes) -> tuple[int, dict[str, str], bytes] | None:
    if name in emu.archive_missing or (check and name + ".CHECKSUM" in emu.archive_missing):
        return None
    digest = hashlib.sha256(body).hexdigest()
    if check:
        return 200, {"Content-Type": "text/plain"}, f"{digest}  {name}\n".encode()
    if name in emu.archive_corrupt:
        body = A._pack(name, b"corrupt\n")
    return 200, {"Content-Type": "application/zip"}, body


def _cached(emu: Any, key: tuple[Any, ...], make: Callable[[], bytes | None]) -> bytes | None:
    cache = emu.__dict__.setdefault("_datasets_archive_cache", {})
    key = (*key, getattr(emu, "_version", 0))
    with _LOCK:
        if key in cache:
            return cache[key]
    body = make()
    with _LOCK:
        if len(cache) > A.CACHE_ENTRIES:
            cache.clear()
        cache[key] = body
    return body


def _price_file(emu: Any, m: re.Match[str]) -> tuple[int, dict[str, str], bytes] | None:
    symbol, interval, name = m["sym"], m["iv"], m["name"]
    if symbol not in emu.symbols or interval not in D.INTERVAL_MS:
        return None
    if (m["kind"] == "daily") != (m["d"] is not None):
        return None
    year, month = int(m["y"]), int(m["m"])
    try:
        lo, hi = A._period(year, month, int(m["d"]) if m["d"] else None)
    except ValueError:
        return None
    if not A._published(emu, m["kind"], hi):
        return None
    kind = ARCHIVE_DIRS[m["dir"]]

    def make() -> bytes | None:
        rows = price_rows(emu, kind, symbol, interval, lo, hi - 1)
        return A._pack(name, A._rows_csv(rows, (year, month))) if rows else None

    body = _cached(emu, (m["dir"], name), make)
    return None if body is None else _finish(emu, name, bool(m["check"]), body)


def _metrics_file(emu: Any, m: re.Match[str]) -> tuple[int, dict[str, str], bytes] | None:
    symbol, name = m["sym"], m["name"]
    if symbol not in emu.symbols:
        return None
    try:
        lo, hi = A._period(int(m["y"]), int(m["m"]), int(m["d"]))
    except ValueError:
        return None
    if not A._published(emu, "daily", hi):
        return None

    def make() -> bytes | None:
        rows = metrics_rows(emu, symbol, lo)
        if not rows:
            return None
        text = "\n".join([METRICS_HEADER, *(",".join(r) for r in rows)]) + "\n"
        return A._pack(name, text.encode())

    body = _cached(emu, ("metrics", name), make)
    return None if body is None else _finish(emu, name, bool(m["check"]), body)
