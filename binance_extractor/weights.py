"""Every endpoint's request weight (Binance USD-M Futures docs): the datasets' endpoints from the catalog, the
others here; and the request windows kept apart from the weight budget (fundingRate, openInterestHist)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from binance_extractor.catalog import DATASETS, DataKind, Weight, klines_weight

__all__ = [
    "FUNDING_LIMIT",
    "FUNDING_PATHS",
    "FUNDING_WINDOW",
    "OPEN_INTEREST_WINDOW",
    "WEIGHTS",
    "RequestWindow",
    "klines_weight",
    "weight",
]


@dataclass(frozen=True)
class RequestWindow:
    """A request limit of its own beside the weight budget (per IP, sliding): the endpoint it is known by, the
    paths counted in it, ``requests`` per ``seconds``. Its ``label`` (logs of a wait) is made from these facts,
    so each window is named by its own endpoint and numbers."""

    endpoint: str
    paths: frozenset[str]
    requests: int
    seconds: float

    @property
    def limit(self) -> tuple[int, float]:
        return self.requests, self.seconds

    @property
    def label(self) -> str:
        """``fundingRate limit (500 / 5 min / IP)``."""
        span = f"{self.seconds / 60:g} min" if self.seconds % 60 == 0 else f"{self.seconds:g} s"
        return f"{self.endpoint.rsplit('/', 1)[-1]} limit ({self.requests} / {span} / IP)"


FUNDING_PATH = DataKind.FUNDING.entry.endpoint
# fundingRate shares 500 requests per 5 minutes per IP with fundingInfo (not listed in exchangeInfo).
FUNDING_WINDOW = RequestWindow(FUNDING_PATH, frozenset({FUNDING_PATH, "/fapi/v1/fundingInfo"}), 500, 300.0)
# The /futures/data statistics (openInterestHist) weigh 0 but have their own IP limit: 1000 requests per 5 minutes
# (docs/DATASETS.md). The client counts them in a window of their own, never in the weight budget.
_OI_PATH = DataKind.OPEN_INTEREST.entry.endpoint
_STATISTICS = frozenset(e.endpoint for e in DATASETS.values() if e.endpoint.startswith("/futures/data/"))
OPEN_INTEREST_WINDOW = RequestWindow(_OI_PATH, _STATISTICS, 1000, 300.0)  # one window for them all: never more
FUNDING_LIMIT: tuple[int, float] = FUNDING_WINDOW.limit
FUNDING_PATHS = FUNDING_WINDOW.paths
OPEN_INTEREST_LIMIT: tuple[int, float] = OPEN_INTEREST_WINDOW.limit
OPEN_INTEREST_PATHS = OPEN_INTEREST_WINDOW.paths

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
