"""Binance USD-M Futures market data extraction: one library for DAG tasks, pods and the CLI."""

__version__ = "0.1.0"
