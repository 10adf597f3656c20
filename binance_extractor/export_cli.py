"""``export``: stored rows of one table to Parquet or CSV files, from any store.

    python -m binance_extractor export --table klines_m5 --symbols BTCUSDT --start 2024-01-01 --end 2024-02-01 \
        --format parquet --output out/klines_m5.parquet [--sink mysql] [--split]

Listed in ``cli.COMMANDS`` (imported only when the parser is built or the command runs).
"""

from __future__ import annotations

import argparse
from typing import Any

from binance_extractor import catalog, config, export, reader
from binance_extractor import symbols as symbols_rule
from binance_extractor.errors import InputError

STORES = catalog.STORE_NAMES


def add_export_parser(sub: Any) -> None:
    help_text = "Write stored rows to Parquet (decimal128) or CSV, streamed; optionally one file per symbol and month."
    p = sub.add_parser("export", help=help_text, description=help_text)
    p.add_argument(
        "--table",
        required=True,
        help="klines_m5 (or m5/5m), funding_rates, agg_trades, trades, mark_klines_m5, index_klines_m5, "
        "premium_klines_m5, open_interest",
    )
    p.add_argument("--symbols", help="comma-separated (default: every symbol stored in the table)")
    p.add_argument("--start", help="ISO 8601 (UTC if no offset) or epoch ms; inclusive (default: first stored row)")
    p.add_argument("--end", help="ISO 8601 or epoch ms; exclusive (default: after the last stored row)")
    p.add_argument("--format", dest="fmt", choices=export.FORMATS, default="parquet", help="default: parquet")
    p.add_argument("--output", required=True, help="file path; with --split a directory")
    p.add_argument(
        "--split", action="store_true", help="one file per symbol and month: OUTPUT/TABLE/SYMBOL/YYYY-MM.EXT"
    )
    p.add_argument(
        "--sink", help="store to read: sqlite, mysql, postgres or mongo (default: the first of BINANCE_EXTRACTOR_SINKS)"
    )
    p.add_argument("--conn-id", help="Airflow connection id of that store")
    p.add_argument("--batch-rows", type=int, default=reader.DEFAULT_BATCH_ROWS, help="klines per read (memory bound)")
    p.add_argument("--xcom-file", help="write the JSON results here")


def _times(args: argparse.Namespace) -> tuple[Any, Any]:
    from binance_extractor.timeutil import parse_time

    start = parse_time(args.start) if args.start else None
    end = parse_time(args.end) if args.end else None
    if start is not None and end is not None and end <= start:
        raise InputError(f"--end {args.end} is not after --start {args.start}")
    return start, end


def run_export(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Validate everything before touching the store, then stream the rows out."""
    table = reader.resolve_table(args.table)
    start, end = _times(args)
    symbols = config.parse_symbols(args.symbols) if args.symbols else None
    if symbols and symbols_rule.malformed(symbols):
        raise InputError(f"malformed symbol in --symbols {args.symbols!r}")
    if args.sink is not None and args.sink not in STORES:
        raise InputError(f"cannot export from {args.sink!r}: use {', '.join(STORES)}")
    if args.batch_rows < 1:
        raise InputError("--batch-rows must be at least 1")
    sink, owned = reader.open_store(args.sink, args.conn_id)
    try:
        results = export.export(
            sink,
            table,
            args.output,
            symbols=symbols,
            start=start,
            end=end,
            fmt=args.fmt,
            split=args.split,
            batch_rows=args.batch_rows,
        )
    finally:
        if owned:
            sink.close()
    return [r.to_dict() for r in results]
