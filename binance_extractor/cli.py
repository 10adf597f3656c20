"""``python -m binance_extractor``: the one entry point for operators, pods and local DAG tasks.

``execute(argv)`` runs a command and returns results (DAG tasks call it in-process); ``main(argv)`` wraps it for
the shell: bad input is one line on stderr and exit code 2, any other failure one line and exit code 1, with the
traceback only under ``--verbose``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from binance_extractor import __version__, clock, config, telemetry, timeframes
from binance_extractor.airflow_setup import COMMAND as SETUP_AIRFLOW_COMMAND
from binance_extractor.client import BinanceFuturesClient
from binance_extractor.errors import ExtractorError, InputError
from binance_extractor.pipeline import Job, JobResult, run_job
from binance_extractor.timeutil import parse_time

log = logging.getLogger("binance_extractor")

KIND_OF_COMMAND = {"klines": "klines", "funding": "funding"}
SOURCES = ("auto", "rest", "archive")


class _Parser(argparse.ArgumentParser):
    """argparse that raises InputError (one clean line) instead of printing usage and exiting."""

    def error(self, message: str) -> Any:
        raise InputError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m binance_extractor",
        description="Extract Binance USD-M Futures market data into MySQL, MongoDB, SQLite or JSON lines.",
    )
    parser.add_argument("--version", action="version", version=f"binance_extractor {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def data_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--symbols", help="comma-separated, e.g. BTCUSDT,ETHUSDT (default: include/config.yaml)")
        p.add_argument("--start", help="ISO 8601 (UTC if no offset) or epoch ms; inclusive")
        p.add_argument("--end", help="ISO 8601 or epoch ms; exclusive (default: now)")
        p.add_argument(
            "--incremental",
            action="store_true",
            help="resume after the newest stored row (bounded by max_catchup_days; empty: history_days back)",
        )
        _sink_options(p)
        return p

    klines = data_command("klines", "Closed candles of one interval for each symbol.")
    klines.add_argument("--interval", required=True, help="Binance interval (5m, 1h, 1d ...) or m5, h1, d1 ...")
    klines.add_argument("--source", choices=SOURCES, default="auto", help="archive, REST or both (default: auto)")
    data_command("funding", "Funding rate history for each symbol.")
    trades = data_command("trades", "Trades for each symbol: aggregate trades (default) or individual trades.")
    trades.add_argument(
        "--kind", choices=("agg", "historical"), default="agg", help="agg: /aggTrades; historical: needs API key"
    )

    symbols = sub.add_parser("symbols", help="Check symbols against exchangeInfo; prints JSON.")
    symbols.add_argument("--symbols", help="comma-separated (default: include/config.yaml)")
    symbols.add_argument("--binance-conn-id", help="Airflow connection for the exchange (default: environment)")
    retention = sub.add_parser(
        "retention", help="Delete rows older than include/config.yaml `retention:` (off by default), in batches."
    )
    retention.add_argument("--sink", action="append", help="as for klines (default: BINANCE_EXTRACTOR_SINKS)")
    retention.add_argument("--conn-id", action="append", help="as for klines")
    retention.add_argument("--batch", type=int, default=10_000, help="rows per DELETE statement (default 10000)")
    for extra in EXTRA_COMMANDS:
        extra[0](sub)
    return parser


def _sink_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sink",
        action="append",
        help="mysql, postgres, mongo, sqlite, jsonl; repeatable or comma-separated "
        "(default: BINANCE_EXTRACTOR_SINKS or sqlite)",
    )
    p.add_argument(
        "--conn-id", action="append", help="Airflow connection id for the sink, or SINK=CONN_ID with several sinks"
    )
    p.add_argument("--output", help="jsonl sink: file path, or - for stdout")
    p.add_argument("--binance-conn-id", help="Airflow connection for the exchange (default: environment)")
    p.add_argument("--requested-by", default="cli", help="recorded in the audit table (DAG run / task)")
    p.add_argument("--xcom-file", help="write the JSON results here (pods: /airflow/xcom/return.json)")


# Other modules add subcommands: (add_parser(subparsers), handler(args) -> list) pairs keyed by command name.
EXTRA_COMMANDS: list[tuple[Callable[[Any], None], str, Callable[[argparse.Namespace], list[Any]]]] = [
    SETUP_AIRFLOW_COMMAND
]


def parse_sinks(values: Sequence[str] | None) -> list[str]:
    if not values:
        return config.sink_names()
    return config.sink_names(",".join(values))


def parse_conn_ids(values: Sequence[str] | None, sinks: list[str]) -> dict[str, str]:
    """``--conn-id X`` (one database sink) or ``--conn-id mysql=X --conn-id mongo=Y``."""
    out: dict[str, str] = {}
    for value in values or []:
        if "=" in value:
            sink, conn = value.split("=", 1)
            sink = sink.strip().lower()
            if sink not in sinks:
                raise InputError(f"--conn-id {value!r} names sink {sink!r}, which is not selected")
            out[sink] = conn.strip()
        else:
            dbs = [s for s in sinks if s != "jsonl"]
            if len(dbs) != 1:
                raise InputError("--conn-id without SINK= needs exactly one database sink; use --conn-id SINK=CONN")
            out[dbs[0]] = value.strip()
    return out


def make_client(args: argparse.Namespace) -> BinanceFuturesClient:
    if getattr(args, "binance_conn_id", None):
        from binance_extractor.hooks import BinanceFuturesHook

        return BinanceFuturesHook(args.binance_conn_id).get_client()
    return BinanceFuturesClient.from_env()


def resolve_symbols(args: argparse.Namespace, client: BinanceFuturesClient) -> list[str]:
    """Symbols from the flag or config, each checked against exchangeInfo: any unknown one is bad input."""
    symbols = config.parse_symbols(args.symbols) if args.symbols else list(config.settings().symbols)
    if not symbols:
        raise InputError("no symbols given")
    valid, invalid = client.validate_symbols(symbols)
    if invalid:
        sym, reason = next(iter(invalid.items()))
        raise InputError(f"symbol {sym}: {reason}")
    return valid


def _times(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
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


def run_data_command(args: argparse.Namespace) -> list[JobResult]:
    kind = {"klines": "klines", "funding": "funding"}.get(args.command)
    if args.command == "trades":
        kind = "agg_trades" if args.kind == "agg" else "trades"
    assert kind is not None
    interval = timeframes.parse(args.interval).interval if kind == "klines" else None
    start, end = _times(args)
    sink_names = parse_sinks(args.sink)
    parse_conn_ids(args.conn_id, sink_names)  # bad input fails before any network or database access
    client = make_client(args)
    try:
        symbols = resolve_symbols(args, client)
        sinks = open_sinks_for(args)
        try:
            results = []
            bar = _progress_bar(args)
            for symbol in symbols:
                job = Job(
                    kind=kind,
                    symbol=symbol,
                    interval=interval,
                    start=start,
                    end=end,
                    incremental=args.incremental,
                    source=getattr(args, "source", "rest"),
                    requested_by=args.requested_by,
                )
                if bar is not None:
                    bar.set_description(f"{symbol} {interval or kind}")
                result = run_job(job, sinks, client, progress=bar.update if bar is not None else None)
                log.info(
                    "extracted %s",
                    job.table,
                    extra={"event": "job_done", **result.to_dict()},
                )
                results.append(result)
            if bar is not None:
                bar.close()
            return results
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
    from binance_extractor.sinks import open_sinks
    from binance_extractor.sinks.retention import apply_retention, cutoffs

    if args.batch <= 0:
        raise InputError("--batch must be a positive number of rows")
    cutoffs()  # a bad retention setting is bad input before any database is touched
    names = [n for n in parse_sinks(args.sink) if n != "jsonl"]
    sinks = open_sinks(names, parse_conn_ids(args.conn_id, names))
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


def execute(argv: Sequence[str]) -> list[Any]:
    """Run one command; returns its results. Raises ``ExtractorError`` subclasses on failure."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    if not args.command:
        raise InputError("no command given: use klines, funding, trades or symbols (see --help)")
    handlers: dict[str, Callable[[argparse.Namespace], list[Any]]] = {
        "klines": run_data_command,
        "funding": run_data_command,
        "trades": run_data_command,
        "symbols": run_symbols_command,
        "retention": run_retention_command,
    }
    handlers.update({name: handler for _, name, handler in EXTRA_COMMANDS})
    with telemetry.span(f"cli.{args.command}", command=args.command):
        results = handlers[args.command](args)
    out = [r.to_dict() if hasattr(r, "to_dict") else r for r in results]
    if getattr(args, "xcom_file", None):
        path = Path(args.xcom_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out), encoding="utf-8")
    return results


def _configure_logging(verbose: bool) -> None:
    try:
        from binance_extractor import logs

        logs.configure(verbose=verbose)  # JSON unless stderr is a terminal; BINANCE_LOG_FORMAT overrides
    except (ImportError, AttributeError):
        logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or "--help" in argv or "-h" in argv or "--version" in argv:
        try:
            build_parser().parse_args(argv or ["--help"])
        except SystemExit as exc:
            return int(exc.code or 0)
    verbose = "-v" in argv or "--verbose" in argv
    _configure_logging(verbose)
    setup = getattr(telemetry, "setup", None)
    if setup is not None:
        setup()
        attach = getattr(telemetry, "extract_context_from_env", None)
        if attach is not None:
            attach()
    try:
        results = execute(argv)
        if not sys.stdout.isatty() or verbose:
            for r in results:
                if "--output" in argv and "-" in argv:
                    break  # stdout carries the data itself
                print(json.dumps(r.to_dict() if hasattr(r, "to_dict") else r, default=str))
        return 0
    except InputError as exc:
        if verbose:
            log.exception("bad input")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ExtractorError as exc:
        if verbose:
            log.exception("failed")
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if verbose:
            log.exception("failed")
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: {type(exc).__name__}: {text}"[:500], file=sys.stderr)
        return 1
    finally:
        shutdown = getattr(telemetry, "shutdown", None)
        if shutdown is not None:
            shutdown()


from binance_extractor import (  # noqa: E402  (these register their subcommands into EXTRA_COMMANDS)
    export_cli,  # noqa: F401
    gaps_cli,  # noqa: F401
)
from binance_extractor.stream import cli as stream_cli  # noqa: E402,F401  (registers stream)
