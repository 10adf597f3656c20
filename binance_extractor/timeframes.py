"""Timeframes: the project's names (``m5``) and Binance's intervals (``5m``) (tables: ``catalog``).

Every Binance kline interval is supported; the five scheduled ones are listed in ``SCHEDULED``.
The calendar month (``1M``) has no fixed length, so candle arithmetic goes through this module.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from binance_extractor.errors import InputError

_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
BINANCE_INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M")
SCHEDULED = ("m5", "m15", "m30", "h1", "d1")


@dataclass(frozen=True, order=True)
class Timeframe:
    """One kline interval; ``name`` is the project's spelling, ``interval`` Binance's.

    Parsed once where a string enters (CLI, DAG params, config, exchange messages, table names) and passed along
    as this object from there on: ``parse`` is for boundaries, not for re-reading what a caller already knew.
    """

    name: str
    interval: str

    @property
    def is_monthly(self) -> bool:
        return self.interval == "1M"

    @property
    def ms(self) -> int:
        """Fixed length in milliseconds (an upper bound of 31 days for ``1M``)."""
        if self.is_monthly:
            return 31 * 86_400_000
        return int(self.interval[:-1]) * _UNIT_MS[self.interval[-1]]

    @property
    def delta(self) -> timedelta:
        return timedelta(milliseconds=self.ms)

    @property
    def close_offset(self) -> timedelta | None:
        """close_time - open_time (interval - 1 ms), or None for the calendar month."""
        return None if self.is_monthly else timedelta(milliseconds=self.ms - 1)

    def next_open_ms(self, open_ms: int) -> int:
        """Open time of the candle after the one opening at ``open_ms``."""
        if not self.is_monthly:
            return open_ms + self.ms
        dt = datetime.fromtimestamp(open_ms / 1000, UTC)
        year, month = (dt.year + 1, 1) if dt.month == 12 else (dt.year, dt.month + 1)
        return int(dt.replace(year=year, month=month, day=1).timestamp() * 1000)

    def close_ms(self, open_ms: int) -> int:
        """Binance's close_time: the next open minus one millisecond."""
        return self.next_open_ms(open_ms) - 1

    def floor_ms(self, t_ms: int) -> int:
        """Open time of the candle containing ``t_ms`` (weeks open on Mondays, months on the 1st)."""
        if self.is_monthly:
            dt = datetime.fromtimestamp(t_ms / 1000, UTC)
            return int(datetime(dt.year, dt.month, 1, tzinfo=UTC).timestamp() * 1000)
        if self.interval.endswith("w"):
            monday = 4 * 86_400_000  # 1970-01-05 was a Monday
            return t_ms - (t_ms - monday) % self.ms
        return t_ms - t_ms % self.ms

    def ceil_ms(self, t_ms: int) -> int:
        """First candle open time at or after ``t_ms``."""
        floor = self.floor_ms(t_ms)
        return floor if floor == t_ms else self.next_open_ms(floor)

    def count_between(self, start_ms: int, end_ms: int) -> int:
        """Number of candle open times in [start_ms, end_ms)."""
        if end_ms <= start_ms:
            return 0
        first = self.ceil_ms(start_ms)
        if not self.is_monthly:
            return max(0, (end_ms - first + self.ms - 1) // self.ms)
        n, t = 0, first
        while t < end_ms:
            n, t = n + 1, self.next_open_ms(t)
        return n


def days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


@lru_cache(maxsize=128)
def parse(value: str) -> Timeframe:
    """Accept ``m5``/``5m`` (and ``1M``/``mo1`` for months); raise InputError otherwise. Table names
    (``klines_m5``) are read by ``catalog.dataset_of_table``."""
    raw = value.strip()
    if raw in ("1M", "mo1", "M1"):
        return Timeframe("mo1", "1M")
    if raw in BINANCE_INTERVALS:
        return Timeframe(f"{raw[-1]}{raw[:-1]}", raw)
    if len(raw) >= 2 and raw[0] in _UNIT_MS and raw[1:].isdigit():
        interval = f"{raw[1:]}{raw[0]}"
        if interval in BINANCE_INTERVALS:
            return Timeframe(raw, interval)
    valid = ", ".join(BINANCE_INTERVALS)
    raise InputError(f"unknown interval {value!r}: use one of {valid} (or m5, h1, d1 ...)")


def scheduled() -> list[Timeframe]:
    return [parse(name) for name in SCHEDULED]
