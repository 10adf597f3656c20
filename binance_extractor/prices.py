"""Which price a kline series follows (trade, mark, index, premium index), and how a symbol maps to its pair.

One type, so the CLI (``klines --price``), the client, extraction, the archive and the tables never pass the
price around as a string: each member knows its REST endpoint, the parameter that endpoint takes (the index is
published per *pair*), its archive folder on data.binance.vision and its table prefix. Facts and sources:
docs/DATASETS.md.
"""

from __future__ import annotations

import re
from enum import Enum

from binance_extractor.errors import InputError
from binance_extractor.symbols import is_symbol

# A delivery contract is its pair plus "_" and the delivery date (BTCUSDT_250328); a perpetual's pair is itself.
_DELIVERY = re.compile(r"^(?P<pair>[A-Z0-9]+)_(?P<date>\d{6})$")


def pair_of(symbol: str) -> str:
    """The pair whose index a contract follows: BTCUSDT -> BTCUSDT, BTCUSDT_250328 -> BTCUSDT.

    exchangeInfo gives every contract's ``pair`` (the perpetual and the quarterlies of one underlying share it);
    the index-price endpoints and archive folders take that pair. A symbol that is neither form is an input error.
    """
    if not is_symbol(symbol):
        raise InputError(
            f"no pair for {symbol!r}: expected a perpetual (BTCUSDT) or a delivery contract (BTCUSDT_YYMMDD)"
        )
    m = _DELIVERY.match(symbol)
    return m["pair"] if m is not None else symbol


class Price(Enum):
    """The price a kline series follows; ``value`` is the CLI spelling (``klines --price``)."""

    TRADE = "trade"
    MARK = "mark"
    INDEX = "index"
    PREMIUM = "premium"

    @property
    def endpoint(self) -> str:
        return {
            Price.TRADE: "/fapi/v1/klines",
            Price.MARK: "/fapi/v1/markPriceKlines",
            Price.INDEX: "/fapi/v1/indexPriceKlines",
            Price.PREMIUM: "/fapi/v1/premiumIndexKlines",
        }[self]

    @property
    def param(self) -> str:
        """The query parameter naming the series: ``pair`` for the index, ``symbol`` otherwise."""
        return "pair" if self is Price.INDEX else "symbol"

    def subject(self, symbol: str) -> str:
        """What the endpoint and the archive folder are asked for when ``symbol`` is wanted."""
        return pair_of(symbol) if self is Price.INDEX else symbol

    @property
    def archive_dir(self) -> str:
        """The data.binance.vision folder under ``futures/um/{daily,monthly}/``."""
        return {
            Price.TRADE: "klines",
            Price.MARK: "markPriceKlines",
            Price.INDEX: "indexPriceKlines",
            Price.PREMIUM: "premiumIndexKlines",
        }[self]

    @property
    def table_prefix(self) -> str:
        """``klines`` -> ``klines_m5``; ``mark_klines`` -> ``mark_klines_m5``, and so on."""
        return "klines" if self is Price.TRADE else f"{self.value}_klines"

    @property
    def signed(self) -> bool:
        """The premium index is a signed ratio; every other price is positive."""
        return self is Price.PREMIUM

    @classmethod
    def parse(cls, text: str) -> Price:
        """Where text enters (the CLI): one clear error for anything else."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise InputError(f"unknown price {text!r}: expected one of {names}") from None
