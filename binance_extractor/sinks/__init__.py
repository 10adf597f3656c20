"""Storage sinks: the stores of ``catalog.STORES`` (MySQL, PostgreSQL, MongoDB, embedded SQLite) and JSON Lines.

``open_sinks`` is the one way callers get them: names default to ``BINANCE_EXTRACTOR_SINKS``
(see ``config.sink_names``), connection ids to each store's ``default_conn_id`` in the catalog; for ``jsonl``
the "connection id" is the output path (``-`` = stdout).
Each sink's schema is ensured on open.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from binance_extractor import catalog, config
from binance_extractor.sinks.base import GapRecord, RunRecord, Sink, Store, stores

__all__ = [
    "GapRecord",
    "RunRecord",
    "Sink",
    "Store",
    "open_sink",
    "open_sinks",
    "open_stores",
    "store_names",
    "stores",
]


def store_names(names: list[str]) -> list[str]:
    """The names among ``names`` that open a ``Store`` (they read back), order kept."""
    return [n for n in names if n in catalog.STORE_NAMES]


def open_sink(name: str, conn_id: str | None = None) -> Sink:
    """One sink by name (``catalog.STORES``), not yet connected (connecting happens on first use)."""
    entry = catalog.store(name)
    module, _, cls = entry.opener.partition(":")
    factory: Callable[[str], Sink] = getattr(importlib.import_module(module), cls)
    return factory(conn_id or entry.default_conn_id)


def open_sinks(
    names: list[str] | None = None, conn_ids: dict[str, str] | None = None, output: str | None = None
) -> list[Sink]:
    """Open every named sink and ensure its schema; on failure, close the ones already opened.

    ``output`` is the jsonl sink's path (``-`` = stdout), same as ``conn_ids["jsonl"]``.
    """
    chosen = config.sink_names(",".join(names)) if names else config.sink_names()
    ids = dict(conn_ids or {})
    if output is not None:
        ids["jsonl"] = output
    opened: list[Sink] = []
    try:
        for name in dict.fromkeys(chosen):
            sink = open_sink(name, ids.get(name))
            opened.append(sink)
            sink.ensure_schema()
    except BaseException:
        for sink in opened:
            sink.close()
        raise
    return opened


def open_stores(names: list[str], conn_ids: dict[str, str] | None = None) -> list[Store]:
    """``open_sinks`` for callers that read, audit or apply retention: write-only sinks are left out (and closed)."""
    opened = open_sinks(store_names(names), conn_ids)
    for sink in opened:
        if not isinstance(sink, Store):
            sink.close()
    return stores(opened)
