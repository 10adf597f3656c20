"""The emulator's data.binance.vision: monthly and daily kline zips with ``.CHECKSUM`` files.

Served under ``<emulator.url>/archive/`` (``emulator.archive_url``) from ``emulator.klines_rows`` (the same
rows REST serves), for every symbol and interval the emulator knows:

- ``data/futures/um/monthly/klines/SYM/TF/SYM-TF-YYYY-MM.zip`` once the month has ended before the emulator's
  today (plus ``emulator.archive_monthly_lag_days``, default 0), ``.../daily/klines/SYM/TF/SYM-TF-YYYY-MM-DD.zip``
  once the day has ended (plus ``emulator.archive_daily_lag_days``, default 0): published the next day.
- No file for a period without any candle (before listing, after delisting, a whole-period outage); an outage
  inside a period leaves its rows out of the file, as on the exchange.
- Files of periods from 2022-01 have a header row, older ones none; files from 2025-01 carry microsecond
  timestamps (so both parse paths and both time units get exercised).
- Faults, by file name (``SYM-TF-YYYY-MM[-DD].zip``): ``emulator.archive_corrupt`` -> a valid zip whose data
  differs (one trade count changed) with the checksum of the right bytes; ``emulator.archive_truncated`` ->
  the first half of the bytes; ``emulator.archive_missing`` -> 404 for the zip and its checksum (a name ending in
  ``.CHECKSUM`` hides only the checksum); ``emulator.archive_drop`` (dict name -> open times in ms) leaves those
  rows out of an otherwise valid file (REST still has them); ``emulator.archive_unavailable`` (dict name -> n)
  answers the next n requests for that zip with 503. Any container with ``in`` works (e.g. one that
  says yes once).
- Every archive request path is appended to ``emulator.archive_requests``; each response waits
  ``emulator.latency`` like REST ones. Generated zips are cached (LRU, ``CACHE_ENTRIES``) per emulator data version.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import re
import threading
import time
import zipfile
from collections import OrderedDict
from typing import Any

from tests.emulator import data as D

CACHE_ENTRIES = 512
HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
)
HEADER_FROM = (2022, 1)
MICROS_FROM = (2025, 1)
_PATH_RE = re.compile(
    r"^/?data/futures/um/(?P<kind>monthly|daily)/klines/(?P<sym>[A-Z0-9]+)/(?P<iv>\w+)/"
    r"(?P<name>(?P=sym)-(?P=iv)-(?P<y>\d{4})-(?P<m>\d{2})(?:-(?P<d>\d{2}))?\.zip)(?P<check>\.CHECKSUM)?$"
)
_LOCK = threading.Lock()


def _state(emu: Any) -> tuple[list[str], OrderedDict[tuple[Any, ...], tuple[bytes, str]]]:
    """Per-emulator request log and zip cache, created on first use."""
    with _LOCK:
        if not isinstance(getattr(emu, "archive_requests", None), list):
            emu.archive_requests = []
        cache = emu.__dict__.get("_archive_cache")
        if cache is None:
            cache = emu.__dict__["_archive_cache"] = OrderedDict()
        for name in ("archive_corrupt", "archive_missing", "archive_truncated"):
            if getattr(emu, name, None) is None:
                setattr(emu, name, set())
    return emu.archive_requests, cache


def handle(emu: Any, path: str) -> tuple[int, dict[str, str], bytes] | None:
    """Serve one archive GET (``path`` is what follows ``/archive``); None means 404."""
    requests_log, cache = _state(emu)
    requests_log.append(path)
    if getattr(emu, "latency", 0):
        time.sleep(emu.latency)
    m = _PATH_RE.match(path.split("?", 1)[0])
    if m is None:
        return None
    symbol, interval, name = m["sym"], m["iv"], m["name"]
    if symbol not in emu.symbols or interval not in D.INTERVAL_MS:
        return None
    year, month = int(m["y"]), int(m["m"])
    if (m["kind"] == "daily") != (m["d"] is not None):
        return None
    try:
        lo, hi = _period(year, month, int(m["d"]) if m["d"] else None)
    except ValueError:
        return None
    if not _published(emu, m["kind"], hi):
        return None
    check_name = name + ".CHECKSUM"
    if name in emu.archive_missing or (m["check"] and check_name in emu.archive_missing):
        return None
    drop = (getattr(emu, "archive_drop", None) or {}).get(name)
    if drop:
        entry = _dropped(emu, symbol, interval, name, lo, hi, (year, month), set(drop))
    else:
        entry = _zip(emu, cache, symbol, interval, name, lo, hi, (year, month))
    if entry is None:
        return None
    body, digest = entry
    unavailable = getattr(emu, "archive_unavailable", None)
    if not m["check"] and unavailable and unavailable.get(name, 0) > 0:
        with _LOCK:
            unavailable[name] -= 1
        return 503, {"Content-Type": "text/html"}, b"<html><body>503 Service Unavailable</body></html>"
    if m["check"]:
        return 200, {"Content-Type": "text/plain"}, f"{digest}  {name}\n".encode()
    if name in emu.archive_corrupt:
        body = _corrupt(emu, symbol, interval, lo, hi, (year, month))
    elif name in emu.archive_truncated:
        body = body[: len(body) // 2]
    return 200, {"Content-Type": "application/zip"}, body


def _period(year: int, month: int, day: int | None) -> tuple[int, int]:
    if day is None:
        return D.ms(year, month, 1), D.ms(year, month, 1) + calendar.monthrange(year, month)[1] * D.DAY
    lo = calendar.timegm((year, month, day, 0, 0, 0)) * 1000
    if D.ms(year, month, 1) + calendar.monthrange(year, month)[1] * D.DAY <= lo:
        raise ValueError("no such day")
    return lo, lo + D.DAY


def _published(emu: Any, kind: str, period_end: int) -> bool:
    now = emu.now_ms()
    today = now - now % D.DAY
    lag = getattr(emu, f"archive_{kind}_lag_days", 0) or 0
    return period_end + lag * D.DAY <= today


def _rows_csv(rows: list[list[Any]], ym: tuple[int, int]) -> bytes:
    micros = ym >= MICROS_FROM
    lines = [HEADER] if ym >= HEADER_FROM else []
    for r in rows:
        if micros:
            r = [r[0] * 1000, *r[1:6], r[6] * 1000 + 999, *r[7:]]
        lines.append(",".join(str(v) for v in r))
    return ("\n".join(lines) + "\n").encode()


def _pack(name: str, csv_bytes: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr(name[: -len(".zip")] + ".csv", csv_bytes)
    return buf.getvalue()


def _zip(
    emu: Any,
    cache: OrderedDict[tuple[Any, ...], tuple[bytes, str]],
    symbol: str,
    interval: str,
    name: str,
    lo: int,
    hi: int,
    ym: tuple[int, int],
) -> tuple[bytes, str] | None:
    """The (zip bytes, sha256 hex) of a period, or None when it has no candle."""
    key = (name, getattr(emu, "_version", 0))
    with _LOCK:
        hit = cache.get(key)
        if hit is not None:
            cache.move_to_end(key)
            return hit
    rows = emu.klines_rows(symbol, interval, lo, hi - 1)
    if not rows:
        return None
    body = _pack(name, _rows_csv(rows, ym))
    entry = (body, hashlib.sha256(body).hexdigest())
    with _LOCK:
        cache[key] = entry
        while len(cache) > CACHE_ENTRIES:
            cache.popitem(last=False)
    return entry


def _dropped(
    emu: Any, symbol: str, interval: str, name: str, lo: int, hi: int, ym: tuple[int, int], drop: set[int]
) -> tuple[bytes, str] | None:
    """A consistent file (and checksum) that lacks some rows REST has: not cached."""
    rows = [r for r in emu.klines_rows(symbol, interval, lo, hi - 1) if r[0] not in drop]
    if not rows:
        return None
    body = _pack(name, _rows_csv(rows, ym))
    return body, hashlib.sha256(body).hexdigest()


def _corrupt(emu: Any, symbol: str, interval: str, lo: int, hi: int, ym: tuple[int, int]) -> bytes:
    """A well-formed zip of plausible but wrong data: only the checksum can tell."""
    rows = [list(r) for r in emu.klines_rows(symbol, interval, lo, hi - 1)]
    rows[len(rows) // 2][8] = int(rows[len(rows) // 2][8]) + 1
    return _pack(f"{symbol}-{interval}-{_label(lo, hi)}.zip", _rows_csv(rows, ym))


def _label(lo: int, hi: int) -> str:
    fmt = "%Y-%m-%d" if hi - lo == D.DAY else "%Y-%m"
    return time.strftime(fmt, time.gmtime(lo // 1000))
