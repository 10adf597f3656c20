"""Models of the derivative series (issue #23): mark/index/premium-index candles and open interest.

Same rules as ``models.py`` (Decimal from the exchange's strings, never floats; aware UTC datetimes in ms; one
clear ``ValidationError`` naming symbol and time). Only the fields that carry meaning are kept: the price
candles' volume and taker fields are always "0" (Binance: "ignore"), field 8 is the number of price samples the
candle was built from (kept: a short count shows a hiccup at the exchange).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import model_validator

from binance_extractor.errors import ValidationError
from binance_extractor.models import (
    Dec,
    Symbol,
    UTCms,
    _Row,
    check_ohlc,
    close_time_matches,
    interval_timeframe,
)
from binance_extractor.prices import Price
from binance_extractor.timeframes import Timeframe
from binance_extractor.timeutil import iso


class PriceKline(_Row):
    """One closed mark-price, index-price or premium-index candle; ``symbol`` is the pair for the index."""

    key_fields: ClassVar[tuple[str, ...]] = ("symbol", "open_time")
    price: ClassVar[Price] = Price.MARK

    symbol: Symbol
    interval: str
    open_time: UTCms
    close_time: UTCms
    open: Dec
    high: Dec
    low: Dec
    close: Dec
    sample_count: int

    @model_validator(mode="after")
    def _consistent(self) -> PriceKline:
        check_ohlc(self.open, self.high, self.low, self.close, signed=self.price.signed)
        if self.sample_count < 0:
            raise ValueError("negative sample_count")
        if not close_time_matches(self.interval, self.open_time, self.close_time):
            raise ValueError(f"close_time {iso(self.close_time)} is not open_time + {self.interval} - 1 ms")
        return self

    @property
    def timeframe(self) -> Timeframe:
        """The candle's timeframe (stores check a batch against its table's)."""
        return interval_timeframe(self.interval)

    @classmethod
    def from_rest(cls, symbol: str, interval: str, row: list[Any]) -> PriceKline:
        """One element of the price-kline endpoints (and the archive's CSV columns, in the same order)."""
        try:
            return cls.build(
                symbol=symbol,
                interval=interval,
                open_time=int(row[0]),
                open=row[1],
                high=row[2],
                low=row[3],
                close=row[4],
                close_time=int(row[6]),
                sample_count=int(row[8]),
            )
        except (IndexError, TypeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"{cls.__name__} rejected ({symbol}): malformed row {row!r:.120}") from None


class MarkKline(PriceKline):
    price: ClassVar[Price] = Price.MARK


class IndexKline(PriceKline):
    price: ClassVar[Price] = Price.INDEX


class PremiumKline(PriceKline):
    price: ClassVar[Price] = Price.PREMIUM


PRICE_MODELS: dict[Price, type[PriceKline]] = {
    Price.MARK: MarkKline,
    Price.INDEX: IndexKline,
    Price.PREMIUM: PremiumKline,
}


class OpenInterest(_Row):
    """Open interest of ``symbol`` at ``time`` (a 5-minute mark): contracts and their value in the quote asset."""

    key_fields: ClassVar[tuple[str, ...]] = ("symbol", "time")

    symbol: Symbol
    time: UTCms
    open_interest: Dec
    open_interest_value: Dec

    @model_validator(mode="after")
    def _positive(self) -> OpenInterest:
        if self.open_interest < 0 or self.open_interest_value < 0:
            raise ValueError("negative open interest")
        return self

    @classmethod
    def from_rest(cls, row: dict[str, Any]) -> OpenInterest:
        """One element of ``/futures/data/openInterestHist`` (``timestamp`` is an integer or a digit string)."""
        symbol = row.get("symbol", "?")
        try:
            return cls.build(
                symbol=symbol,
                time=int(row["timestamp"]),
                open_interest=row["sumOpenInterest"],
                open_interest_value=row["sumOpenInterestValue"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"OpenInterest rejected ({symbol}): malformed row {row!r:.120}") from None

    @classmethod
    def from_metrics(cls, row: list[str]) -> OpenInterest:
        """One row of a data.binance.vision daily ``metrics`` file: ``create_time`` is ``YYYY-MM-DD HH:MM:SS`` UTC."""
        try:
            when = datetime.fromisoformat(row[0].strip() + "+00:00")
            return cls.build(symbol=row[1], time=when, open_interest=row[2], open_interest_value=row[3])
        except (IndexError, TypeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"OpenInterest rejected: malformed metrics row {row!r:.120}") from None


class LongShortRatio(_Row):
    """The global long/short account ratio of ``symbol`` at ``time`` (a 5-minute mark): accounts net long over
    accounts net short. The metrics files carry only the ratio, so only the ratio is kept (REST's ``longAccount``
    and ``shortAccount`` are ``r / (1 + r)`` and ``1 / (1 + r)`` of it), and both sources give the same row."""

    key_fields: ClassVar[tuple[str, ...]] = ("symbol", "time")

    symbol: Symbol
    time: UTCms
    long_short_ratio: Dec

    @model_validator(mode="after")
    def _positive(self) -> LongShortRatio:
        if self.long_short_ratio < 0:
            raise ValueError("negative long/short ratio")
        return self

    @classmethod
    def from_rest(cls, row: dict[str, Any]) -> LongShortRatio:
        """One element of ``/futures/data/globalLongShortAccountRatio``."""
        symbol = row.get("symbol", "?")
        try:
            return cls.build(symbol=symbol, time=int(row["timestamp"]), long_short_ratio=row["longShortRatio"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"LongShortRatio rejected ({symbol}): malformed row {row!r:.120}") from None

    @classmethod
    def from_metrics(cls, row: list[str]) -> LongShortRatio:
        """One row of a daily ``metrics`` file: ``count_long_short_ratio`` (the 7th column) is this ratio."""
        try:
            when = datetime.fromisoformat(row[0].strip() + "+00:00")
            return cls.build(symbol=row[1], time=when, long_short_ratio=row[6])
        except (IndexError, TypeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"LongShortRatio rejected: malformed metrics row {row!r:.120}") from None
