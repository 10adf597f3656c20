"""The questions gap detection asks a store, answered inside the database (one dialect per store).

Why it exists: detection must never load a table into Python, and each store spells window functions its own
way. Like ``airflow.providers.common.sql``'s dialects, each store hands out its own ``GapQueries``
(``Store.gap_queries()``), so nothing outside ``sinks/`` touches a store's internals or branches on its name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from binance_extractor.kinds import Dataset

FUNDING_NEIGHBOURS = 8  # funding pairs on each side of a pair that tell the interval in force around it
FAR = 10**15  # "no such neighbour" in the funding queries (larger than any distance in ms)


@dataclass(frozen=True)
class FundingPair:
    """Two consecutive funding times further apart than the interval in force around them.

    That interval is the larger of the shortest distance among the ``FUNDING_NEIGHBOURS`` pairs before and the
    shortest among those after (one side at the range's edges, 8 h when alone): a hole right after another hole
    (up to eight in a row) still has regular pairs on both sides, and a change of the contract's interval
    (8 h -> 4 h -> 1 h, or back) is not a hole on either side of it. ``ctx`` spans those neighbours, so
    re-detection sees them too.
    """

    prev: int
    cur: int
    interval: int
    ctx: tuple[int, int]


class GapQueries(ABC):
    """Window-function questions over one symbol's rows with key time in ``[lo, hi)`` (epoch ms)."""

    @abstractmethod
    def stats(self, dataset: Dataset, symbol: str, lo: int, hi: int) -> tuple[int, int | None, int | None]:
        """Rows with key time in [lo, hi): count, smallest and largest key (time, or agg_trade_id)."""

    @abstractmethod
    def kline_pairs(self, dataset: Dataset, symbol: str, lo: int, hi: int, step_ms: int) -> list[tuple[int, int]]:
        """(previous open, open) of consecutive stored candles further apart than one interval."""

    @abstractmethod
    def event_pairs(
        self, dataset: Dataset, symbol: str, lo: int, hi: int, default_ms: int, tol_ms: int
    ) -> list[FundingPair]:
        """Events (``Shape.EVENTS``: funding) further apart than the interval in force around them."""

    @abstractmethod
    def id_pairs(self, dataset: Dataset, symbol: str, lo: int, hi: int) -> list[tuple[int, int, int, int]]:
        """(previous id, id, previous time, time) where ids (``Shape.IDS``: aggregate trades) are not consecutive."""
