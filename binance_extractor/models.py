"""Pydantic v2 models of exchange rows: Decimal for every price and quantity, aware UTC datetimes (ms).

Floats are refused outright: a price must arrive as the exchange's decimal string (or a Decimal/int),
so no binary rounding can ever slip in. Impossible rows raise ``ValidationError`` naming symbol and time;
callers drop nothing silently and write nothing from a rejected batch.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from binance_extractor import timeframes
from binance_extractor.errors import ValidationError
from binance_extractor.symbols import is_symbol
from binance_extractor.timeutil import iso, ms_to_dt


def _decimal(value: Any) -> Decimal:
    if type(value) is str:  # the exchange's decimal string: the hot path
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
        if not result.is_finite():
            raise ValueError(f"not a finite decimal: {value!r}")
        return result
    if isinstance(value, (float, bool)):
        raise ValueError("floats are not accepted for prices or quantities; pass the decimal string")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, (str, int)):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
    else:
        raise ValueError(f"not a decimal number: {value!r}")
    if not result.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    return result


def _utc(value: Any) -> datetime:
    if type(value) is int:
        return ms_to_dt(value)
    if isinstance(value, bool):
        raise ValueError("not a timestamp")
    if isinstance(value, int):
        return ms_to_dt(value)
    if isinstance(value, str) and value.isdigit():
        return ms_to_dt(int(value))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    raise ValueError(f"not a timestamp: {value!r}")


def _symbol(value: Any) -> str:
    if not is_symbol(value):
        raise ValueError(f"malformed symbol {value!r}")
    return value


Dec = Annotated[Decimal, BeforeValidator(_decimal)]
UTCms = Annotated[datetime, BeforeValidator(_utc)]
Symbol = Annotated[str, BeforeValidator(_symbol)]


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    key_fields: ClassVar[tuple[str, ...]]

    @classmethod
    def build(cls, **fields: Any) -> Any:
        """Validate into the model, turning pydantic's error into one line naming symbol and time."""
        try:
            return cls(**fields)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "row"
            what = first.get("msg", str(exc)).removeprefix("Value error, ")
            raise ValidationError(f"{cls.__name__} rejected ({_describe(fields)}): {where}: {what}") from None

    def key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self.key_fields)


def _describe(fields: dict[str, Any]) -> str:
    symbol = fields.get("symbol", "?")
    for name in ("open_time", "time", "funding_time"):
        if name in fields:
            try:
                return f"{symbol} at {iso(_utc(fields[name]))}"
            except ValueError:
                return f"{symbol} at {fields[name]!r}"
    return str(symbol)


def check_ohlc(o: Decimal, h: Decimal, low: Decimal, c: Decimal, *, signed: bool = False) -> None:
    """One candle's prices agree: high is the maximum, low the minimum, and (unless ``signed``, as the premium
    index) none is negative. Shared by every kline model."""
    if h < o or h < c or h < low:
        raise ValueError(f"high {h} below open/close/low")
    if low > o or low > c:
        raise ValueError(f"low {low} above open/close")
    if low < 0 and not signed:  # low is the minimum, so this covers every price
        raise ValueError("negative price")


class Kline(_Row):
    """One closed candle of ``interval`` (Binance spelling, e.g. ``5m``)."""

    key_fields: ClassVar[tuple[str, ...]] = ("symbol", "open_time")

    symbol: Symbol
    interval: str
    open_time: UTCms
    close_time: UTCms
    open: Dec
    high: Dec
    low: Dec
    close: Dec
    volume: Dec
    quote_volume: Dec
    trade_count: int
    taker_buy_base_volume: Dec
    taker_buy_quote_volume: Dec

    @model_validator(mode="after")
    def _consistent(self) -> Kline:
        check_ohlc(self.open, self.high, self.low, self.close)
        for name in ("volume", "quote_volume", "taker_buy_base_volume", "taker_buy_quote_volume"):
            if getattr(self, name) < 0:
                raise ValueError(f"negative {name}")
        if self.trade_count < 0:
            raise ValueError("negative trade_count")
        tf = self.timeframe
        offset = tf.close_offset
        if offset is not None:
            consistent = self.close_time - self.open_time == offset
        else:
            consistent = _ms(self.close_time) == tf.close_ms(_ms(self.open_time))
        if not consistent:
            raise ValueError(f"close_time {iso(self.close_time)} is not open_time + {self.interval} - 1 ms")
        return self

    @property
    def timeframe(self) -> timeframes.Timeframe:
        """The candle's timeframe (``interval`` is Binance's spelling of it, as the exchange sent it)."""
        return timeframes.parse(self.interval)

    @classmethod
    def from_rest(cls, symbol: str, interval: str, row: list[Any]) -> Kline:
        """Build from one element of ``GET /fapi/v1/klines`` (and the archive's CSV columns)."""
        try:
            return cls.build(
                symbol=symbol,
                interval=interval,
                open_time=int(row[0]),
                open=row[1],
                high=row[2],
                low=row[3],
                close=row[4],
                volume=row[5],
                close_time=int(row[6]),
                quote_volume=row[7],
                trade_count=int(row[8]),
                taker_buy_base_volume=row[9],
                taker_buy_quote_volume=row[10],
            )
        except (IndexError, TypeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"Kline rejected ({symbol}): malformed row {row!r:.120}") from None


class Trade(_Row):
    """One individual trade (``/fapi/v1/trades``, ``historicalTrades``, or an account trade with commission)."""

    key_fields: ClassVar[tuple[str, ...]] = ("symbol", "trade_id")

    symbol: Symbol
    trade_id: Annotated[int, pydantic.Field(ge=0, lt=2**63)]
    price: Dec
    quantity: Dec
    quote_quantity: Dec
    time: UTCms
    is_buyer_maker: bool
    commission: Dec | None = None
    commission_asset: str | None = None

    @model_validator(mode="after")
    def _positive(self) -> Trade:
        if self.price < 0 or self.quantity < 0 or self.quote_quantity < 0:
            raise ValueError("negative price or quantity")
        return self

    @classmethod
    def from_rest(cls, symbol: str, row: dict[str, Any]) -> Trade:
        try:
            return cls.build(
                symbol=symbol,
                trade_id=int(row["id"]),
                price=row["price"],
                quantity=row["qty"],
                quote_quantity=row["quoteQty"],
                time=int(row["time"]),
                is_buyer_maker=bool(row["isBuyerMaker"]),
                commission=row.get("commission"),
                commission_asset=row.get("commissionAsset"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"Trade rejected ({symbol}): malformed row {row!r:.120}") from None


class AggTrade(_Row):
    """One aggregate trade (``/fapi/v1/aggTrades``): consecutive ids, so gaps in ids are detectable."""

    key_fields: ClassVar[tuple[str, ...]] = ("symbol", "agg_trade_id")

    symbol: Symbol
    agg_trade_id: Annotated[int, pydantic.Field(ge=0, lt=2**63)]
    price: Dec
    quantity: Dec
    first_trade_id: Annotated[int, pydantic.Field(ge=0, lt=2**63)]
    last_trade_id: Annotated[int, pydantic.Field(ge=0, lt=2**63)]
    time: UTCms
    is_buyer_maker: bool

    @model_validator(mode="after")
    def _ordered(self) -> AggTrade:
        if self.price < 0 or self.quantity < 0:
            raise ValueError("negative price or quantity")
        if self.last_trade_id < self.first_trade_id:
            raise ValueError("last_trade_id below first_trade_id")
        return self

    @classmethod
    def from_rest(cls, symbol: str, row: dict[str, Any]) -> AggTrade:
        try:
            return cls.build(
                symbol=symbol,
                agg_trade_id=int(row["a"]),
                price=row["p"],
                quantity=row["q"],
                first_trade_id=int(row["f"]),
                last_trade_id=int(row["l"]),
                time=int(row["T"]),
                is_buyer_maker=bool(row["m"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"AggTrade rejected ({symbol}): malformed row {row!r:.120}") from None


class FundingRate(_Row):
    """One funding event; ``funding_time`` keeps the exchange's millisecond jitter as is."""

    key_fields: ClassVar[tuple[str, ...]] = ("symbol", "funding_time")

    symbol: Symbol
    funding_time: UTCms
    funding_rate: Dec
    mark_price: Dec | None = None
    next_funding_time: UTCms | None = None

    @classmethod
    def from_rest(cls, row: dict[str, Any]) -> FundingRate:
        symbol = row.get("symbol", "?")
        try:
            mark = row.get("markPrice")
            return cls.build(
                symbol=symbol,
                funding_time=int(row["fundingTime"]),
                funding_rate=row["fundingRate"],
                mark_price=mark if mark not in (None, "") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"FundingRate rejected ({symbol}): malformed row {row!r:.120}") from None


def interval_timeframe(interval: str) -> timeframes.Timeframe:
    """The timeframe of a validated row's ``interval`` field (the exchange's spelling): read here, once."""
    return timeframes.parse(interval)


def close_time_matches(interval: str, open_time: datetime, close_time: datetime) -> bool:
    """A candle of the exchange's ``interval`` closes 1 ms before the next one opens (calendar months included)."""
    tf = interval_timeframe(interval)
    offset = tf.close_offset
    if offset is not None:
        return close_time - open_time == offset
    return _ms(close_time) == tf.close_ms(_ms(open_time))


def _ms(dt: datetime) -> int:
    from binance_extractor.timeutil import dt_to_ms

    return dt_to_ms(dt)
