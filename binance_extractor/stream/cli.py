"""``python -m binance_extractor stream``: the live tail as a subcommand (listed in ``cli.COMMANDS``)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from binance_extractor import cli_options, timeframes
from binance_extractor.errors import InputError
from binance_extractor.stream import health, plan

DEFAULT_INTERVALS = "5m,15m,30m,1h,1d"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "stream",
        help="Tail the WebSocket kline streams: store each closed candle within seconds (runs until SIGTERM).",
        description="Tail the USD-M kline streams; REST fills from the newest stored candle at start and after "
        "every reconnect. BINANCE_FUTURES_WS_URL overrides wss://fstream.binance.com.",
    )
    p.add_argument("--symbols", help="comma-separated (default: include/config.yaml)")
    p.add_argument("--intervals", default=DEFAULT_INTERVALS, help=f"comma-separated (default: {DEFAULT_INTERVALS})")
    p.add_argument("--sink", action="append", help="as for klines (default: BINANCE_EXTRACTOR_SINKS or sqlite)")
    p.add_argument("--conn-id", action="append", help="as for klines")
    p.add_argument("--output", help="jsonl sink: file path, or - for stdout")
    p.add_argument("--binance-conn-id", help="Airflow connection for the exchange REST fills (default: environment)")
    p.add_argument(
        "--streams-per-connection",
        type=int,
        default=plan.DEFAULT_STREAMS_PER_CONNECTION,
        help=f"at most {plan.MAX_STREAMS_PER_CONNECTION} (Binance's limit; default "
        f"{plan.DEFAULT_STREAMS_PER_CONNECTION})",
    )
    p.add_argument("--queue-size", type=int, default=1000, help="closed candles buffered for the writer (bound)")
    p.add_argument("--no-fill", action="store_true", help="no REST fill at start-up and after reconnects")
    p.add_argument("--requested-by", default="stream", help="recorded in the audit table for REST fills")
    p.add_argument("--xcom-file", help="write the final stats as JSON here")
    p.add_argument(
        "--health-port",
        type=int,
        default=int(os.environ.get("BINANCE_STREAM_HEALTH_PORT", "0") or 0),
        help="serve GET /livez and /readyz on this port (Kubernetes probes; default BINANCE_STREAM_HEALTH_PORT, "
        "0 = off)",
    )
    p.add_argument(
        "--ready-after",
        type=float,
        default=health.READY_AFTER_S,
        help=f"seconds of silence on a connection, or without writer progress, before /readyz fails "
        f"(default {health.READY_AFTER_S:.0f})",
    )
    p.add_argument(
        "--live-after",
        type=float,
        default=health.LIVE_AFTER_S,
        help=f"the same for /livez, after which Kubernetes restarts the tail (default {health.LIVE_AFTER_S:.0f})",
    )


def run(args: argparse.Namespace) -> list[Any]:
    from binance_extractor.stream.tail import Tail, TailConfig

    tfs = list(dict.fromkeys(timeframes.parse(i.strip()) for i in (args.intervals or "").split(",") if i.strip()))
    if not tfs:
        raise InputError("--intervals is empty")
    if not 1 <= args.streams_per_connection <= plan.MAX_STREAMS_PER_CONNECTION:
        raise InputError(f"--streams-per-connection must be 1..{plan.MAX_STREAMS_PER_CONNECTION} (Binance's limit)")
    if args.queue_size < 1:
        raise InputError("--queue-size must be at least 1")
    if not 0 <= args.health_port <= 65535:
        raise InputError("--health-port must be 0..65535")
    if not 0 < args.ready_after <= args.live_after:
        raise InputError("--ready-after must be positive and at most --live-after")
    names = cli_options.parse_sinks(args.sink)
    cli_options.parse_conn_ids(args.conn_id, names)  # bad input fails before any network or database access
    if "jsonl" in names and not args.output:
        raise InputError("the jsonl sink needs --output PATH (or - for stdout)")
    client = cli_options.make_client(args)
    try:
        symbols = cli_options.resolve_symbols(args, client)
    finally:
        client.close()
    config = TailConfig(
        symbols=symbols,
        timeframes=tfs,
        streams_per_connection=args.streams_per_connection,
        queue_size=args.queue_size,
        fill=not args.no_fill,
        requested_by=args.requested_by,
    )
    tail = Tail(
        config, open_sinks=lambda: cli_options.open_sinks_for(args), make_client=lambda: cli_options.make_client(args)
    )
    tail.health = health.TailHealth(len(tail.groups), ready_after_s=args.ready_after, live_after_s=args.live_after)
    server = health.serve(tail.health, args.health_port) if args.health_port else None
    try:
        return [tail.run_forever().to_dict()]
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
