"""Where each dataset's rows come from: the one table from a data kind to the iterator that reads it.

Why: the extraction (``pipeline``) and the ledger's evidence (``gaps/evidence.py``) both ask the exchange for a
dataset's rows in a range; each used to branch on the kind to find the endpoint. Series kept per timeframe (trade,
mark, index and premium-index klines) share one reader, by their price; the others are listed in ``_READERS``.
Adding a dataset is its catalog entry, its client call and, here, its reader.

``source``: ``rest``, ``archive`` (data.binance.vision) or ``auto`` (the archive where it has the range, REST for
the rest); a dataset without archive files is read from REST whatever ``source`` says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from binance_extractor import extract
from binance_extractor.catalog import DataKind, price_of
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.kinds import Dataset

Reader = Callable[..., Iterator[Any]]  # (client, symbol, start_ms, end_ms, *, source, now_ms) -> batches


def _statistic(kind: DataKind) -> Reader:
    """A ``/futures/data`` statistic (REST for the last 30 days, the daily metrics files before)."""

    def read(client: BinanceFuturesClient, symbol: str, s: int, e: int, **kw: Any) -> Iterator[Any]:
        from binance_extractor import open_interest

        return open_interest.iter_source(client, symbol, s, e, kind=kind, **kw)

    return read


def _rest_only(fn: Callable[..., Iterator[Any]]) -> Reader:
    def read(client: BinanceFuturesClient, symbol: str, s: int, e: int, *, source: str, now_ms: int | None) -> Any:
        return fn(client, symbol, s, e, now_ms=now_ms)

    return read


_READERS: dict[DataKind, Reader] = {
    DataKind.FUNDING: _rest_only(extract.iter_funding),
    DataKind.AGG_TRADES: _rest_only(extract.iter_agg_trades),
    DataKind.TRADES: _rest_only(extract.iter_historical_trades),
    DataKind.OPEN_INTEREST: _statistic(DataKind.OPEN_INTEREST),
    DataKind.LONG_SHORT_RATIO: _statistic(DataKind.LONG_SHORT_RATIO),
}


def batches(
    dataset: Dataset,
    client: BinanceFuturesClient,
    symbol: str,
    start_ms: int,
    end_ms: int,
    *,
    source: str = "rest",
    now_ms: int | None = None,
) -> Iterator[Any]:
    """The rows of ``dataset`` for ``symbol`` in ``[start_ms, end_ms)`` before the closed bound (``now_ms``, default
    the exchange's), in order: lists of models, or archive files as columnar ``KlineBlock``s."""
    tf = dataset.timeframe
    if tf is None:
        return _READERS[dataset.kind](client, symbol, start_ms, end_ms, source=source, now_ms=now_ms)
    price = price_of(dataset.kind)  # trade klines, or mark/index/premium-index klines
    if source in ("auto", "archive") and dataset.entry.archive_path is not None:
        from binance_extractor import archive

        return archive.iter_klines(
            client,
            symbol,
            tf,
            start_ms,
            end_ms,
            source=source,
            columnar=True,
            workers=archive.BULK_WORKERS,
            price=price,
        )
    return extract.iter_klines(client, symbol, tf, start_ms, end_ms, now_ms=now_ms, price=price)
