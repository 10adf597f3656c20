"""What the CLI's commands share: the sink/connection options, time and symbol parsing, the client and sinks.

Why a module of its own: every command module (``data_cli``, ``gaps_cli``, ``export_cli``, ``stream.cli``,
``airflow.setup``) imports these, and ``cli`` only dispatches to the commands, so nothing imports ``cli`` back.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from binance_extractor import catalog, clock, config
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.errors import InputError
from binance_extractor.symbols import split_syntax
from binance_extractor.timeutil import parse_time

SOURCES = ("auto", "rest", "archive")


def sink_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sink",
        action="append",
        help=f"{catalog.sink_list()}; repeatable or comma-separated (default: BINANCE_EXTRACTOR_SINKS or sqlite)",
    )
    p.add_argument(
        "--conn-id", action="append", help="Airflow connection id for the sink, or SINK=CONN_ID with several sinks"
    )
    p.add_argument("--output", help="jsonl sink: file path, or - for stdout")
    p.add_argument("--binance-conn-id", help="Airflow connection for the exchange (default: environment)")
    p.add_argument("--requested-by", default="cli", help="recorded in the audit table (DAG run / task)")
    p.add_argument("--xcom-file", help="write the JSON results here (pods: /airflow/xcom/return.json)")


def parse_sinks(values: Sequence[str] | None) -> list[str]:
    if not values:
        return config.sink_names()
    return config.sink_names(",".join(values))


def parse_conn_ids(values: Sequence[str] | None, sinks: list[str]) -> dict[str, str]:
    """``--conn-id X`` (one database sink) or ``--conn-id mysql=X --conn-id mongo=Y``."""
    from binance_extractor.sinks import store_names

    out: dict[str, str] = {}
    for value in values or []:
        if "=" in value:
            sink, conn = value.split("=", 1)
            sink = sink.strip().lower()
            if sink not in sinks:
                raise InputError(f"--conn-id {value!r} names sink {sink!r}, which is not selected")
            out[sink] = conn.strip()
        else:
            dbs = store_names(sinks)
            if len(dbs) != 1:
                raise InputError("--conn-id without SINK= needs exactly one database sink; use --conn-id SINK=CONN")
            out[dbs[0]] = value.strip()
    return out


def make_client(args: argparse.Namespace) -> BinanceFuturesClient:
    if getattr(args, "binance_conn_id", None):
        from binance_extractor.airflow.hooks import BinanceFuturesHook

        return BinanceFuturesHook(args.binance_conn_id).get_client()
    return BinanceFuturesClient.from_env()


def resolve_symbols(args: argparse.Namespace, client: BinanceFuturesClient) -> list[str]:
    """Symbols from the flag or config, each checked against exchangeInfo: any unknown one is bad input."""
    symbols = config.parse_symbols(args.symbols) if args.symbols else list(config.settings().symbols)
    if not symbols:
        raise InputError("no symbols given")
    valid, invalid = split_syntax(symbols)
    if not invalid:
        valid, invalid = client.validate_symbols(valid)
    if invalid:
        sym, reason = next(iter(invalid.items()))
        raise InputError(f"symbol {sym}: {reason}")
    return valid


def times(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    start = parse_time(args.start) if args.start else None
    end = parse_time(args.end) if args.end else None
    if start and end and end <= start:
        raise InputError(f"--end {args.end} is not after --start {args.start}")
    if start and start > clock.now():
        raise InputError(f"--start {args.start} is in the future")
    return start, end


def open_sinks_for(args: argparse.Namespace) -> list[Any]:
    from binance_extractor.sinks import open_sinks

    names = parse_sinks(args.sink)
    if "jsonl" in names and not args.output:
        raise InputError("the jsonl sink needs --output PATH (or - for stdout)")
    sinks = open_sinks(names, parse_conn_ids(args.conn_id, names), output=args.output)
    for sink in sinks:
        sink.ensure_schema()
    return sinks
