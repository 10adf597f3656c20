"""Every endpoint's request weight (Binance USD-M Futures docs): the datasets' endpoints from the catalog, the
others here; and the fundingRate limit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from binance_extractor.catalog import DATASETS, DataKind, Weight, klines_weight

__all__ = ["FUNDING_LIMIT", "FUNDING_PATHS", "WEIGHTS", "klines_weight", "weight"]

FUNDING_PATH = DataKind.FUNDING.entry.endpoint
# fundingRate shares 500 requests per 5 minutes per IP with fundingInfo (not listed in exchangeInfo).
FUNDING_LIMIT: tuple[int, float] = (500, 300.0)
# The /futures/data statistics (openInterestHist) weigh 0 but have their own IP limit: 1000 requests per 5 minutes
# (docs/DATASETS.md). The client counts them in a window of their own, never in the weight budget.
OPEN_INTEREST_LIMIT: tuple[int, float] = (1000, 300.0)
OPEN_INTEREST_PATHS = frozenset({"/futures/data/openInterestHist"})
FUNDING_PATHS = frozenset({FUNDING_PATH, "/fapi/v1/fundingInfo"})

WEIGHTS: dict[str, Weight] = {
    "/fapi/v1/ping": lambda p: 1,
    "/fapi/v1/time": lambda p: 1,
    "/fapi/v1/exchangeInfo": lambda p: 1,
    "/fapi/v1/fundingInfo": lambda p: 1,
    "/fapi/v1/trades": lambda p: 5,
    "/fapi/v1/premiumIndex": lambda p: 1 if p.get("symbol") else 10,
    **{entry.endpoint: entry.weight for entry in DATASETS.values()},
}


def weight(path: str, params: Mapping[str, Any] | None = None) -> int:
    """The weight of one GET; an endpoint missing from the table is an error, never a guess."""
    try:
        return WEIGHTS[path](params or {})
    except KeyError:
        hint = "add it to binance_extractor.weights.WEIGHTS (a dataset's: its catalog entry)"
        raise KeyError(f"no weight known for {path}: {hint}") from None
