"""``import``: restore what ``export`` wrote (Parquet or CSV, a file or a ``--split`` tree) into a store.

    python -m binance_extractor import --input out/klines_m5.parquet --sink mysql [--table klines_m5]
    python -m binance_extractor import --input out/ --sink postgres          # a --split tree

Listed in ``cli.COMMANDS`` (imported only when the parser is built or the command runs).
"""

from __future__ import annotations

import argparse
from typing import Any

from binance_extractor import catalog, reader, restore
from binance_extractor.errors import InputError


def add_import_parser(sub: Any) -> None:
    help_text = "Restore export files (Parquet or CSV, a file or a --split tree) into a store, exactly, idempotently."
    p = sub.add_parser("import", help=help_text, description=help_text)
    p.add_argument("--input", required=True, help="an export file, or a directory (searched for .parquet/.csv)")
    p.add_argument("--table", help="the table the files hold (default: from the Parquet metadata or the --split tree)")
    p.add_argument("--sink", required=True, help="store to restore into: sqlite, mysql, postgres or mongo")
    p.add_argument("--conn-id", help="Airflow connection id of that store")
    p.add_argument("--batch-rows", type=int, default=restore.DEFAULT_BATCH_ROWS, help="rows read at once")
    p.add_argument("--xcom-file", help="write the JSON results here")


def run_import(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Check the files and the store name first; nothing is written unless every file validates."""
    if args.sink not in catalog.STORE_NAMES:
        raise InputError(f"cannot import into {args.sink!r}: use {', '.join(catalog.STORE_NAMES)}")
    restore.find_inputs(args.input, args.table)
    sink, owned = reader.open_store(args.sink, args.conn_id)
    try:
        results = restore.restore(sink, args.input, args.table, batch_rows=args.batch_rows)
    finally:
        if owned:
            sink.close()
    return [r.to_dict() for r in results]
