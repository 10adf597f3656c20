"""``python -m binance_extractor``: the one entry point for operators, pods and local DAG tasks.

``execute(argv)`` runs a command and returns results (DAG tasks call it in-process); ``main(argv)`` wraps it for
the shell: bad input is one line on stderr and exit code 2, any other failure one line and exit code 1, with the
traceback only under ``--verbose``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from binance_extractor import catalog, logs, telemetry
from binance_extractor.errors import ExtractorError, InputError
from binance_extractor.version import __version__

log = logging.getLogger("binance_extractor")

# One command table: name -> (module, its add_parser function, its run function). Each module keeps its heavy
# imports inside ``run``; nothing here imports a command module until the parser is built or the command runs.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "klines": ("binance_extractor.data_cli", "add_klines", "run_data_command"),
    "funding": ("binance_extractor.data_cli", "add_funding", "run_data_command"),
    "open-interest": ("binance_extractor.data_cli", "add_open_interest", "run_data_command"),
    "long-short-ratio": ("binance_extractor.data_cli", "add_long_short_ratio", "run_data_command"),
    "trades": ("binance_extractor.data_cli", "add_trades", "run_data_command"),
    "symbols": ("binance_extractor.data_cli", "add_symbols", "run_symbols_command"),
    "retention": ("binance_extractor.data_cli", "add_retention", "run_retention_command"),
    "setup-airflow": ("binance_extractor.airflow.setup", "add_parser", "run"),
    "export": ("binance_extractor.export_cli", "add_export_parser", "run_export"),
    "import": ("binance_extractor.import_cli", "add_import_parser", "run_import"),
    "copy": ("binance_extractor.copy_cli", "add_copy_parser", "run_copy"),
    "gaps": ("binance_extractor.gaps_cli", "add_gaps_parser", "run_gaps"),
    "fill-gaps": ("binance_extractor.gaps_cli", "add_fill_parser", "run_fill"),
    "stream": ("binance_extractor.stream.cli", "add_parser", "run"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises InputError (one clean line) instead of printing usage and exiting."""

    def error(self, message: str) -> Any:
        raise InputError(message)


def _function(command: str, which: int) -> Callable[..., Any]:
    module, *names = COMMANDS[command]
    return getattr(importlib.import_module(module), names[which])


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m binance_extractor",
        description=f"Extract Binance USD-M Futures market data into {catalog.store_titles()}.",
    )
    parser.add_argument("--version", action="version", version=f"binance_extractor {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        _function(command, 0)(sub)
    return parser


def execute(argv: Sequence[str]) -> list[Any]:
    """Run one command; returns its results. Raises ``ExtractorError`` subclasses on failure."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    if not args.command:
        raise InputError("no command given: use klines, funding, trades or symbols (see --help)")
    handler = _function(args.command, 1)
    with telemetry.span(f"cli.{args.command}", command=args.command):
        results = handler(args)
    out = [r.to_dict() if hasattr(r, "to_dict") else r for r in results]
    if getattr(args, "xcom_file", None):
        path = Path(args.xcom_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out), encoding="utf-8")
    return results


def _configure_logging(verbose: bool) -> None:
    logs.configure(verbose=verbose)  # JSON unless stderr is a terminal; BINANCE_LOG_FORMAT overrides


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or "--help" in argv or "-h" in argv or "--version" in argv:
        try:
            build_parser().parse_args(argv or ["--help"])
        except SystemExit as exc:
            return int(exc.code or 0)
    verbose = "-v" in argv or "--verbose" in argv
    _configure_logging(verbose)
    telemetry.setup()
    telemetry.extract_context_from_env()
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
        print(f"error: {logs.mask(str(exc))}", file=sys.stderr)
        return 2
    except ExtractorError as exc:
        if verbose:
            log.exception("failed")
        print(f"error: {logs.mask(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if verbose:
            log.exception("failed")
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(logs.mask(f"error: {type(exc).__name__}: {text}")[:500], file=sys.stderr)
        return 1
    finally:
        telemetry.shutdown()
