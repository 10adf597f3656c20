"""Which archive files cover a range: whole months as monthly zips, the days around them as daily zips.

Why apart: pure calendar arithmetic, shared by the fetcher and the planner, testable without any download.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from binance_extractor import timeutil
from binance_extractor.catalog import DataKind
from binance_extractor.timeframes import Timeframe

PREFIX = "data/futures/um"
KLINES_FOLDER = DataKind.KLINES.entry.archive_path or ""
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Period:
    """One archive file's period: a calendar month (``monthly``) or a UTC day (``daily``)."""

    kind: str
    label: str  # YYYY-MM or YYYY-MM-DD
    lo_ms: int
    hi_ms: int

    def filename(self, symbol: str, interval: str) -> str:
        return f"{symbol}-{interval}-{self.label}.zip"

    def path(self, symbol: str, interval: str, folder: str = KLINES_FOLDER) -> str:
        """The file's path under the archive's root; ``folder`` is the dataset's (``DatasetEntry.archive_path``);
        ``metrics`` files are daily with no interval folder (``interval`` is then the word ``metrics``)."""
        if folder == "metrics":
            return f"{PREFIX}/{self.kind}/metrics/{symbol}/{self.filename(symbol, interval)}"
        return f"{PREFIX}/{self.kind}/{folder}/{symbol}/{interval}/{self.filename(symbol, interval)}"

    def days(self) -> list[Period]:
        """The daily periods of a month (used while its monthly file is not yet published)."""
        return [day_period(t) for t in range(self.lo_ms, self.hi_ms, DAY_MS)]


def day_period(t_ms: int) -> Period:
    """The daily file's period of the day opening at ``t_ms``."""
    d = datetime.fromtimestamp(t_ms // 1000, UTC)
    return Period("daily", d.strftime("%Y-%m-%d"), t_ms, t_ms + DAY_MS)


def _month_end(t_ms: int) -> int:
    d = datetime.fromtimestamp(t_ms // 1000, UTC)
    y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return timeutil.dt_to_ms(datetime(y, m, 1, tzinfo=UTC))


def plan_periods(start_ms: int, end_ms: int) -> list[Period]:
    """Files covering ``[start_ms, end_ms)``: monthly for months wholly inside, daily for the days around."""
    out: list[Period] = []
    t = start_ms - start_ms % DAY_MS
    while t < end_ms:
        d = datetime.fromtimestamp(t // 1000, UTC)
        if d.day == 1 and t >= start_ms:
            m_end = _month_end(t)
            if m_end <= end_ms:
                out.append(Period("monthly", d.strftime("%Y-%m"), t, m_end))
                t = m_end
                continue
        out.append(day_period(t))
        t += DAY_MS
    return out


def archivable(tf: Timeframe) -> bool:
    """Intervals whose candles never straddle a UTC day (so every file holds whole candles)."""
    return not tf.is_monthly and tf.ms <= DAY_MS and DAY_MS % tf.ms == 0
