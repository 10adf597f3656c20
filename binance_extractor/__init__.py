"""Binance USD-M Futures market data extraction: one library for DAG tasks, pods and the CLI."""

from typing import Any

from binance_extractor.version import __version__

__all__ = ["__version__", "read"]


def read(*args: Any, **kwargs: Any) -> Any:
    """Stored rows as a pandas or polars DataFrame with exact decimals: see ``binance_extractor.reader.read``."""
    from binance_extractor.reader import read as _read

    return _read(*args, **kwargs)
