"""``gaps`` (list holes as JSON) and ``fill-gaps`` (repair, verify closure, update the ledger, report).

    python -m binance_extractor gaps --table klines_m5 [--symbols A,B] [--start ISO] [--end ISO] [--sink mysql]
    python -m binance_extractor gaps --recheck-ledger [--table ...] [--symbols ...]     # legacy ledger rows vs REST
    python -m binance_extractor fill-gaps --table klines_m5,funding_rates [...]          # detect + repair
    python -m binance_extractor fill-gaps --chunk klines_m5/BTCUSDT/START/END [...]      # one planned chunk (pods)

What is closed comes from the exchange's clock (``exchange_clock.closed_before``) for both; what goes into the
ledger from the one evidence rule (``gaps/evidence.py``).

Listed in ``cli.COMMANDS`` (imported only when the parser is built or the command runs).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from binance_extractor import catalog, cli_options, config, gaps
from binance_extractor import symbols as symbols_rule
from binance_extractor.errors import ExtractorError, InputError
from binance_extractor.sinks import store_names

log = logging.getLogger(__name__)


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise InputError(f"not a whole number: {value!r}") from None
    if n < 1:
        raise InputError(f"must be at least 1: {value!r}")
    return n


def _positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise InputError(f"not a number: {value!r}") from None
    if not x > 0:
        raise InputError(f"must be positive: {value!r}")
    return x


def _scope_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--table",
        action="append",
        help=f"{gaps.GAP_TABLES} (klines also as m5/5m); repeatable or comma-separated (default: all)",
    )
    p.add_argument("--symbols", help="comma-separated (default: every symbol stored in the table)")
    p.add_argument("--start", help="expected first row (ISO or epoch ms); default: first stored row per symbol")
    p.add_argument("--end", help="exclusive end (default: now; klines: the last closed candle)")
    p.add_argument("--full-history", action="store_true", help="expect rows from each symbol's listing date")
    p.add_argument("--min-gap", type=_positive_int, help="ignore holes of fewer missing rows (config: min_gap_candles)")
    p.add_argument("--max-gap", type=_positive_int, help="ignore holes of more missing rows (config: max_gap_candles)")


def add_gaps_parser(sub: Any) -> None:
    p = sub.add_parser("gaps", help="List holes in stored data as JSON.", description="List holes as JSON lines.")
    _scope_options(p)
    p.add_argument(
        "--recheck-ledger",
        action="store_true",
        help="ask REST again for every ledger row recorded before the evidence rule (legacy): delete and fill the "
        "rows the exchange serves, rewrite the others with evidence; one JSON line per row",
    )
    cli_options.sink_options(p)


def add_fill_parser(sub: Any) -> None:
    help_text = "Refetch holes, verify closure, record exchange-side holes in the ledger; prints the report."
    p = sub.add_parser("fill-gaps", help=help_text, description=help_text)
    _scope_options(p)
    p.add_argument(
        "--chunk",
        action="append",
        help="TABLE/SYMBOL/START/END[/CTX_START/CTX_END]: repair exactly this planned chunk (repeatable)",
    )
    p.add_argument("--source", choices=cli_options.SOURCES, default="auto", help="klines source (default: auto)")
    p.add_argument("--chunk-days", type=_positive_float, help="chunk length in days (config: chunk_days)")
    cli_options.sink_options(p)


def _settings(args: argparse.Namespace) -> gaps.GapSettings:
    return gaps.GapSettings.load(
        min_gap=args.min_gap, max_gap=args.max_gap, chunk_days=getattr(args, "chunk_days", None)
    )


def _symbols(args: argparse.Namespace) -> list[str] | None:
    if not args.symbols:
        return None
    symbols = config.parse_symbols(args.symbols)
    return symbols_rule.require(symbols)


def _client(args: argparse.Namespace) -> Any:
    """The exchange client; ``None`` (this machine's clock decides what is closed) when ``gaps`` cannot reach it."""
    client = cli_options.make_client(args)
    try:
        gaps.closed_before(client)  # measure the exchange's clock once (GET /fapi/v1/time)
    except ExtractorError as exc:
        client.close()
        if args.command != "gaps":
            raise
        log.warning("the exchange's clock is unavailable (%s): what is closed is judged by this machine's", exc)
        return None
    return client


def _scan(
    args: argparse.Namespace, sinks: list[Any], settings: gaps.GapSettings, client: Any, closed: int
) -> list[gaps.Scan]:
    """Detection over the command's scope up to ``closed`` (the exchange's closed bound, taken once per command)."""
    start, end = cli_options.times(args)
    return gaps.find_holes(
        sinks,
        client,
        gaps.parse_tables(args.table),
        _symbols(args),
        closed=closed,
        settings=settings,
        start=start,
        end=end,
        full_history=start is None and (args.full_history or config.settings().full_history),
    )


def _check(args: argparse.Namespace) -> None:
    """Bad input fails before any database or network access."""
    gaps.parse_tables(args.table)
    cli_options.times(args)
    _symbols(args)
    names = cli_options.parse_sinks(args.sink)
    cli_options.parse_conn_ids(args.conn_id, names)
    if not store_names(names):
        raise InputError(
            f"gap detection needs a database sink: --sink {catalog.sink_list(catalog.STORE_NAMES, ' or ')}"
        )


def run_gaps(args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = _settings(args)
    _check(args)
    sinks = cli_options.open_sinks_for(args)
    client = None
    try:
        client = _client(args)
        if args.recheck_ledger:
            if client is None:
                raise ExtractorError("--recheck-ledger asks the exchange, which cannot be reached")
            datasets = gaps.parse_tables(args.table) if args.table else None
            symbols = _symbols(args)
            return gaps.recheck(
                sinks, client, settings=settings, checked_by=args.requested_by, datasets=datasets, symbols=symbols
            )
        scans = _scan(args, sinks, settings, client, gaps.closed_before(client))
        out: list[dict[str, Any]] = []
        for s in scans:
            pending = gaps.pending_records(sinks, s.dataset, s.symbol)
            for h in s.holes:
                why = gaps.pending_of(h, pending)
                if why is None:
                    out.append({**h.to_dict(), "status": "open"})
                else:
                    out.append({**h.to_dict(), "status": gaps.NOT_FILLABLE_YET, "reason": why.reason})
            out.extend({**h.to_dict(), "status": "skipped"} for h in s.skipped)
        return out
    finally:
        if client is not None:
            client.close()
        for sink in sinks:
            sink.close()


def run_fill(args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = _settings(args)
    chunks = [gaps.Chunk.parse(c) for c in args.chunk or []]
    if chunks and (args.table or args.symbols or args.start or args.full_history):
        raise InputError("--chunk cannot be combined with --table, --symbols, --start or --full-history")
    _check(args)
    sinks = cli_options.open_sinks_for(args)
    client = cli_options.make_client(args)
    try:
        before: list[gaps.Scan] = []
        closed = gaps.closed_before(client)  # one bound for the scans before and after the fill
        if not chunks:
            before = _scan(args, sinks, settings, client, closed)
            gaps.prune_pending(sinks, before)  # "not fillable yet" rows of holes filled since
            chunks = gaps.chunk_holes(gaps.holes_of(before), settings.chunk_ms)
            log.info("%d hole(s) in %d chunk(s)", len(gaps.holes_of(before)), len(chunks))
        results = gaps.fill_chunks(
            chunks, sinks, client, source=args.source, requested_by=args.requested_by, settings=settings
        )
        result_dicts = [r.to_dict() for r in results]
        open_holes = gaps.verify(chunks, sinks, result_dicts, settings)
        after = _scan(args, sinks, settings, client, closed) if before else []
    finally:
        client.close()
        for sink in sinks:
            sink.close()
    report = gaps.report_run(before, result_dicts, after, open_holes, metrics=bool(before))
    report["chunks"] = result_dicts
    gaps.raise_if_open(open_holes)
    return [report]
