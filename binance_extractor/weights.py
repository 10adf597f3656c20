"""Every endpoint's request weight, in one table (Binance USD-M Futures docs), and the fundingRate limit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# fundingRate shares 500 requests per 5 minutes per IP with fundingInfo (not listed in exchangeInfo).
FUNDING_LIMIT: tuple[int, float] = (500, 300.0)
FUNDING_PATHS = frozenset({"/fapi/v1/fundingRate", "/fapi/v1/fundingInfo"})
# The /futures/data statistics (openInterestHist) weigh 0 but have their own IP limit: 1000 requests per 5 minutes
# (docs/DATASETS.md). The client counts them in a window of their own, never in the weight budget.
OPEN_INTEREST_LIMIT: tuple[int, float] = (1000, 300.0)
OPEN_INTEREST_PATHS = frozenset({"/futures/data/openInterestHist"})


def klines_weight(limit: int) -> int:
    """GET /fapi/v1/klines weight by limit: 1 / 2 / 5 / 10."""
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


def _limit(params: Mapping[str, Any], default: int) -> int:
    try:
        return int(params.get("limit") or default)
    except (TypeError, ValueError):
        return default


WEIGHTS: dict[str, Callable[[Mapping[str, Any]], int]] = {
    "/fapi/v1/ping": lambda p: 1,
    "/fapi/v1/time": lambda p: 1,
    "/fapi/v1/exchangeInfo": lambda p: 1,
    "/fapi/v1/klines": lambda p: klines_weight(_limit(p, 500)),
    "/fapi/v1/fundingRate": lambda p: 1,
    "/fapi/v1/fundingInfo": lambda p: 1,
    "/fapi/v1/aggTrades": lambda p: 20,
    "/fapi/v1/trades": lambda p: 5,
    "/fapi/v1/historicalTrades": lambda p: 20,
    "/fapi/v1/premiumIndex": lambda p: 1 if p.get("symbol") else 10,
    # mark/index/premium-index klines weigh like the trade klines, by limit (docs/DATASETS.md)
    "/fapi/v1/markPriceKlines": lambda p: klines_weight(_limit(p, 500)),
    "/fapi/v1/indexPriceKlines": lambda p: klines_weight(_limit(p, 500)),
    "/fapi/v1/premiumIndexKlines": lambda p: klines_weight(_limit(p, 500)),
    "/futures/data/openInterestHist": lambda p: 0,
}


def weight(path: str, params: Mapping[str, Any] | None = None) -> int:
    """The weight of one GET; an endpoint missing from the table is an error, never a guess."""
    try:
        return WEIGHTS[path](params or {})
    except KeyError:
        raise KeyError(f"no weight known for {path}: add it to binance_extractor.weights.WEIGHTS") from None
