"""The data commands: ``klines`` (``--price``), ``funding``, ``trades``, ``open-interest``, ``long-short-ratio``
(extraction), ``symbols`` and ``retention``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from binance_extractor import config, timeframes
from binance_extractor.cli_options import (
    SOURCES,
    make_client,
    open_sinks_for,
    parse_conn_ids,
    parse_sinks,
    resolve_symbols,
    sink_options,
    times,
)
from binance_extractor.errors import InputError
from binance_extractor.kinds import command_kind
from binance_extractor.lookahead import lookahead_for
from binance_extractor.pipeline import Job, JobResult, run_job
from binance_extractor.prices import Price
from binance_extractor.symbol_batch import run_batch

log = logging.getLogger("binance_extractor")


def _data_parser(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument("--symbols", help="comma-separated, e.g. BTCUSDT,ETHUSDT (default: include/config.yaml)")
    p.add_argument("--start", help="ISO 8601 (UTC if no offset) or epoch ms; inclusive")
    p.add_argument("--end", help="ISO 8601 or epoch ms; exclusive (default: now)")
    p.add_argument(
        "--incremental",
        action="store_true",
        help="resume after the newest stored row (bounded by max_catchup_days; empty: history_days back)",
    )
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="with several symbols: a failing symbol does not stop the others; fail at the end naming the failed ones",
    )
    p.add_argument(
        "--skip-succeeded",
        action="store_true",
        help="skip symbols the stores' audit shows a success of this --requested-by for (a retry of the same run)",
    )
    sink_options(p)
    return p


def add_klines(sub: Any) -> None:
    klines = _data_parser(sub, "klines", "Closed candles of one interval for each symbol.")
    klines.add_argument("--interval", required=True, help="Binance interval (5m, 1h, 1d ...) or m5, h1, d1 ...")
    klines.add_argument("--source", choices=SOURCES, default="auto", help="archive, REST or both (default: auto)")
    klines.add_argument(
        "--price",
        choices=[p.value for p in Price],
        default=Price.TRADE.value,
        help="trade (default), mark, index (the symbol's pair) or premium (index) klines: docs/DATASETS.md",
    )


def add_open_interest(sub: Any) -> None:
    _statistic_parser(sub, "open-interest", "Open interest (5-minute marks) for each symbol.")


def add_long_short_ratio(sub: Any) -> None:
    _statistic_parser(sub, "long-short-ratio", "Global long/short account ratio (5-minute marks) for each symbol.")


def _statistic_parser(sub: Any, command: str, description: str) -> None:
    """A ``/futures/data`` statistic: REST serves 30 days, the daily metrics files the rest."""
    parser = _data_parser(sub, command, description)
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default="auto",
        help="rest: the last 30 days only; archive: the daily metrics files; auto: both (default)",
    )


def add_funding(sub: Any) -> None:
    _data_parser(sub, "funding", "Funding rate history for each symbol.")


def add_trades(sub: Any) -> None:
    trades = _data_parser(sub, "trades", "Trades for each symbol: aggregate trades (default) or individual trades.")
    trades.add_argument(
        "--kind", choices=("agg", "historical"), default="agg", help="agg: /aggTrades; historical: needs API key"
    )


def add_symbols(sub: Any) -> None:
    symbols = sub.add_parser("symbols", help="Check symbols against exchangeInfo; prints JSON.")
    symbols.add_argument("--symbols", help="comma-separated (default: include/config.yaml)")
    symbols.add_argument("--binance-conn-id", help="Airflow connection for the exchange (default: environment)")


def add_retention(sub: Any) -> None:
    retention = sub.add_parser(
        "retention", help="Delete rows older than include/config.yaml `retention:` (off by default), in batches."
    )
    retention.add_argument("--sink", action="append", help="as for klines (default: BINANCE_EXTRACTOR_SINKS)")
    retention.add_argument("--conn-id", action="append", help="as for klines")
    retention.add_argument("--batch", type=int, default=10_000, help="rows per DELETE statement (default 10000)")


def run_data_command(args: argparse.Namespace) -> list[JobResult]:
    options = {"--kind": getattr(args, "kind", None), "--price": getattr(args, "price", None)}
    kind = command_kind(args.command, options)  # trades --kind, klines --price: the catalog's command_args
    timeframe = timeframes.parse(args.interval) if kind.entry.per_timeframe else None  # the CLI boundary
    start, end = times(args)
    sink_names = parse_sinks(args.sink)
    parse_conn_ids(args.conn_id, sink_names)  # bad input fails before any network or database access
    if args.skip_succeeded and args.requested_by in ("", "cli"):
        raise InputError("--skip-succeeded needs the --requested-by label of the run whose tries it resumes")
    client = make_client(args)
    try:
        symbols = resolve_symbols(args, client)
        sinks = open_sinks_for(args)
        try:
            bar = _progress_bar(args)

            def run(job: Job) -> JobResult:
                if bar is not None:
                    bar.set_description(f"{job.symbol} {job.interval or kind}")
                result = run_job(job, sinks, client, progress=bar.update if bar is not None else None, ahead=ahead)
                log.info("extracted %s", job.table, extra={"event": "job_done", **result.to_dict()})
                return result

            jobs = [
                Job(
                    kind=kind,
                    symbol=symbol,
                    timeframe=timeframe,
                    start=start,
                    end=end,
                    incremental=args.incremental,
                    source=getattr(args, "source", "rest"),
                    requested_by=args.requested_by,
                )
                for symbol in symbols
            ]
            ahead = lookahead_for(jobs, client)  # archive symbols: the next one is fetched while this one loads
            try:
                outcome = run_batch(jobs, sinks, run, skip_succeeded=args.skip_succeeded, keep_going=args.keep_going)
            finally:
                if ahead is not None:
                    ahead.close()
            if bar is not None:
                bar.close()
            outcome.raise_if_failed()
            return outcome.results
        finally:
            for sink in sinks:
                sink.close()
    finally:
        client.close()


def run_symbols_command(args: argparse.Namespace) -> list[dict[str, Any]]:
    client = make_client(args)
    try:
        symbols = config.parse_symbols(args.symbols) if args.symbols else list(config.settings().symbols)
        valid, invalid = client.validate_symbols(symbols)
        return [{"valid": valid, "invalid": invalid}]
    finally:
        client.close()


def run_retention_command(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The maintenance task: per sink, rows deleted per table (an empty dict when retention is off)."""
    from binance_extractor.sinks import open_stores, store_names
    from binance_extractor.sinks.retention import apply_retention, cutoffs

    if args.batch <= 0:
        raise InputError("--batch must be a positive number of rows")
    cutoffs()  # a bad retention setting is bad input before any database is touched
    names = store_names(parse_sinks(args.sink))
    sinks = open_stores(names, parse_conn_ids(args.conn_id, names))
    try:
        return [{"sink": s.name, "deleted": apply_retention(s, batch=args.batch)} for s in sinks]
    finally:
        for sink in sinks:
            sink.close()


def _progress_bar(args: argparse.Namespace) -> Any:
    if not sys.stderr.isatty() or args.xcom_file:
        return None
    from tqdm import tqdm

    return tqdm(unit=" rows", file=sys.stderr, leave=False)
