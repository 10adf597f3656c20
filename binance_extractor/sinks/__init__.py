"""Storage sinks: MySQL (primary), PostgreSQL, MongoDB, embedded SQLite (default) and JSON Lines.

``open_sinks`` is the one way callers get them: names default to ``BINANCE_EXTRACTOR_SINKS``
(see ``config.sink_names``), connection ids default to ``mysql_default``/``postgres_default``/``mongo_default``/
``sqlite_default``; for ``jsonl`` the "connection id" is the output path (``-`` = stdout).
Each sink's schema is ensured on open.
"""

from __future__ import annotations

from binance_extractor import config
from binance_extractor.errors import InputError
from binance_extractor.sinks.base import GapRecord, RunRecord, Sink, Store, stores, time_column

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
    "time_column",
]

STORE_NAMES = ("sqlite", "mysql", "postgres", "mongo")  # the names that open a Store; "jsonl" is a write-only Sink


def store_names(names: list[str]) -> list[str]:
    """The names among ``names`` that open a ``Store`` (they read back), order kept."""
    return [n for n in names if n in STORE_NAMES]


def open_sink(name: str, conn_id: str | None = None) -> Sink:
    """One sink by name, not yet connected (connecting happens on first use)."""
    if name == "sqlite":
        from binance_extractor.sinks.sqlite import DEFAULT_CONN_ID as SQLITE_ID
        from binance_extractor.sinks.sqlite import SqliteSink

        return SqliteSink(conn_id or SQLITE_ID)
    if name == "mysql":
        from binance_extractor.sinks.mysql import DEFAULT_CONN_ID as MYSQL_ID
        from binance_extractor.sinks.mysql import MySqlSink

        return MySqlSink(conn_id or MYSQL_ID)
    if name == "postgres":
        from binance_extractor.sinks.postgres import DEFAULT_CONN_ID as POSTGRES_ID
        from binance_extractor.sinks.postgres import PostgresSink

        return PostgresSink(conn_id or POSTGRES_ID)
    if name == "mongo":
        from binance_extractor.sinks.mongo import DEFAULT_CONN_ID as MONGO_ID
        from binance_extractor.sinks.mongo import MongoSink

        return MongoSink(conn_id or MONGO_ID)
    if name == "jsonl":
        from binance_extractor.sinks.jsonl import JsonlSink

        return JsonlSink(conn_id or "-")
    raise InputError(f"unknown sink {name!r}: use one of {', '.join(config.VALID_SINKS)}")


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
