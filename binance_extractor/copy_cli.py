"""``copy``: every table of one store into another (market data, gap ledger, run audit), exactly and resumably.

    python -m binance_extractor copy --from sqlite --to mysql [--table klines_m5 funding_rates ...] [--symbols ...]

Listed in ``cli.COMMANDS`` (imported only when the parser is built or the command runs).
"""

from __future__ import annotations

import argparse
from typing import Any

from binance_extractor import catalog, config, reader, store_copy
from binance_extractor import symbols as symbols_rule
from binance_extractor.errors import InputError


def add_copy_parser(sub: Any) -> None:
    help_text = (
        "Copy tables from one store into another (default: every data table, the gap ledger and the run audit); "
        "an interrupted copy continues where it stopped when run again."
    )
    p = sub.add_parser("copy", help=help_text, description=help_text)
    p.add_argument("--from", dest="source", required=True, help="store to read: sqlite, mysql, postgres or mongo")
    p.add_argument("--to", dest="target", required=True, help="store to write: sqlite, mysql, postgres or mongo")
    p.add_argument("--from-conn-id", help="Airflow connection id of the source (default: the store's default)")
    p.add_argument("--to-conn-id", help="Airflow connection id of the target (default: the store's default)")
    p.add_argument(
        "--table",
        action="extend",
        nargs="+",
        help="tables to copy (klines_m5 or m5/5m, funding_rates, agg_trades, trades, gap_ledger, extraction_runs); "
        "repeatable or comma-separated (default: all)",
    )
    p.add_argument("--symbols", help="comma-separated (default: every symbol stored)")
    p.add_argument("--batch-rows", type=int, default=reader.DEFAULT_BATCH_ROWS, help="klines per window (memory bound)")
    p.add_argument(
        "--verify",
        action="store_true",
        help="compare windows the target already has row by row (not only by count) and rewrite any that differ",
    )
    p.add_argument("--xcom-file", help="write the JSON results here")


def run_copy(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Validate every option before opening either store."""
    for flag, name in (("--from", args.source), ("--to", args.target)):
        if name not in catalog.STORE_NAMES:
            raise InputError(f"{flag} {name!r}: use {', '.join(catalog.STORE_NAMES)}")
    if args.source == args.target and (args.from_conn_id or "") == (args.to_conn_id or ""):
        raise InputError("--from and --to are the same store: give --from-conn-id or --to-conn-id")
    tables = [t for value in args.table or [] for t in value.split(",") if t.strip()]
    for t in tables:
        if t.strip() not in store_copy.BOOKKEEPING:
            reader.resolve_table(t)
    symbols = config.parse_symbols(args.symbols) if args.symbols else None
    if symbols and symbols_rule.malformed(symbols):
        raise InputError(f"malformed symbol in --symbols {args.symbols!r}")
    if args.batch_rows < 1:
        raise InputError("--batch-rows must be at least 1")
    source, _ = reader.open_store(args.source, args.from_conn_id)
    try:
        target, _ = reader.open_store(args.target, args.to_conn_id)
        try:
            target.ensure_schema()
            results = store_copy.copy_stores(
                source, target, tables or None, symbols, batch_rows=args.batch_rows, verify=args.verify
            )
        finally:
            target.close()
    finally:
        source.close()
    return [r.to_dict() for r in results]
